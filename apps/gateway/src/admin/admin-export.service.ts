/**
 * Exports of approved data: build and record one (libs/store export.queries.ts), list them, hand back
 * one file for download. The JSONL lives in the exports table, so any replica serves the download.
 */
import { adminExportCreateBodySchema, type AdminExport, type AdminExportList } from '@flywheel/contracts';
import { Injectable } from '@nestjs/common';
import { createExport, findExport, listExports } from '@flywheel/store';
import { fromZodError, OpenAiError } from '../http/openai-error';
import { StoreHandle } from '../store/store.handle';
import { adminExportOf } from './admin.mapping';

export interface ExportFile {
  filename: string;
  content: string;
  sha256: string;
}

@Injectable()
export class AdminExportService {
  constructor(private readonly store: StoreHandle) {}

  async create(body: unknown, actor: string): Promise<AdminExport> {
    const parsed = adminExportCreateBodySchema.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error, body);
    const filters = parsed.data.filters ?? {};
    if (filters.from && filters.to && Date.parse(filters.from) >= Date.parse(filters.to)) {
      throw OpenAiError.invalid("'filters.from' must be before 'filters.to'.", 'filters.from', 'invalid_value');
    }
    const row = await createExport(this.store.get().db, {
      format: parsed.data.format,
      filters: {
        ...(filters.policy_version ? { policyVersion: filters.policy_version } : {}),
        ...(filters.from ? { from: new Date(filters.from) } : {}),
        ...(filters.to ? { to: new Date(filters.to) } : {}),
      },
      filtersRecord: filters,
      createdBy: actor,
    });
    return adminExportOf(row);
  }

  async list(): Promise<AdminExportList> {
    return { object: 'list', data: (await listExports(this.store.get().db, 200)).map(adminExportOf) };
  }

  async file(id: string): Promise<ExportFile> {
    const row = await findExport(this.store.get().db, id);
    if (!row) throw new OpenAiError(404, 'invalid_request_error', `No export found with id '${id}'.`, 'id', 'export_not_found');
    return { filename: `flywheel-${row.format}-${row.id}.jsonl`, content: row.content, sha256: row.sha256 };
  }
}
