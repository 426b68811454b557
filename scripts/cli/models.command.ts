/**
 * `flywheel models publish|promote|rollback|list`: the operator's face of model versions on the mesh. Publish
 * packs a checkpoint directory into the `checkpoints` object store; promote and rollback are each one write to
 * the `models` KV bucket, which every policy replica watches (hot swap). Each prints one JSON object on stdout.
 * `publish --run ID DIR` brings back a checkpoint trained elsewhere for the loop run ID whose `external` stage waits
 * for it (named ID-external unless --version says otherwise; the loop then evaluates and promotes it).
 * Lineage rows in the database are written by the gateway, which follows the KV (README, "Model versions").
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import { z } from 'zod';
import { loadServiceConfig } from '@flywheel/config';
import { externalCandidateVersion, modelRoleSchema, modelVersionNameSchema } from '@flywheel/contracts';
import { drainQuietly, listModelVersions, promoteVersion, putCheckpoint, rollback } from '@flywheel/mesh';

export const MODELS_USAGE =
  'usage: flywheel models publish --dir DIR --version V [--parent P] [--run-id R] [--export ID]... [--role policy|reward]\n' +
  '       flywheel models publish --run LOOP_RUN_ID [--dir] DIR [--version V] [--parent P]   (the loop\'s external stage takes it)\n' +
  '       flywheel models promote --version V [--role policy|reward] [--reason TEXT] [--by NAME]\n' +
  '       flywheel models rollback [--role policy|reward] [--by NAME]\n' +
  '       flywheel models list [--role policy|reward]\n' +
  '       (NATS from NATS_URL, or --nats URL)';

const commonArgs = z.object({
  role: modelRoleSchema.default('policy'),
  nats: z.string().min(1).optional(),
  by: z.string().min(1).default(`cli:${os.userInfo().username}`),
});
const publishArgs = commonArgs.extend({
  dir: z.string({ message: '--dir DIR is required' }).min(1),
  /** Optional with --run (then the loop run's external candidate name). */
  version: modelVersionNameSchema.optional(),
  parent: z.string().min(1).optional(),
  runId: z.string().min(1).optional(),
  export: z.array(z.string().min(1)).default([]),
});
const promoteArgs = commonArgs.extend({
  version: z.string({ message: '--version V is required' }).min(1),
  reason: z.string().default('manual promotion'),
});

export async function modelsCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      dir: { type: 'string' },
      version: { type: 'string' },
      parent: { type: 'string' },
      'run-id': { type: 'string' },
      run: { type: 'string' },
      export: { type: 'string', multiple: true },
      role: { type: 'string' },
      reason: { type: 'string' },
      by: { type: 'string' },
      nats: { type: 'string' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length > (sub === 'publish' && values.dir === undefined ? 1 : 0)) {
    throw new TypeError(`flywheel models: unexpected argument ${JSON.stringify(positionals.at(-1))}\n${MODELS_USAGE}`);
  }
  if (values.run !== undefined && values['run-id'] !== undefined && values.run !== values['run-id']) {
    throw new TypeError(`flywheel models: --run and --run-id name different runs\n${MODELS_USAGE}`);
  }
  const raw = { ...values, dir: values.dir ?? positionals[0], runId: values['run-id'] ?? values.run };
  const run = async (fn: (nc: NatsConnection) => Promise<unknown>, nats: string | undefined): Promise<number> => {
    const servers = nats ? [nats] : loadServiceConfig('trainer', process.env).nats.servers;
    const nc = await connect({ servers, timeout: 5_000, name: 'flywheel-cli' });
    try {
      process.stdout.write(`${JSON.stringify(await fn(nc))}\n`);
      return 0;
    } finally {
      await drainQuietly(nc);
    }
  };
  switch (sub) {
    case 'publish': {
      const a = parse(publishArgs, raw);
      const version = a.version ?? (a.runId ? externalCandidateVersion(a.runId) : undefined);
      if (version === undefined) throw new TypeError(`flywheel models: --version V is required (or --run ID)\n${MODELS_USAGE}`);
      return run((nc) => putCheckpoint(nc, { version, role: a.role, dir: a.dir, parent: a.parent ?? null, runId: a.runId ?? null, exports: a.export }), a.nats);
    }
    case 'promote': {
      const a = parse(promoteArgs, raw);
      return run((nc) => promoteVersion(nc, a.role, a.version, a.by, a.reason), a.nats);
    }
    case 'rollback': {
      const a = parse(commonArgs, raw);
      return run(async (nc) => {
        const entry = await rollback(nc, a.role, a.by);
        if (!entry) throw new Error(`no earlier ${a.role} version to roll back to`);
        return entry;
      }, a.nats);
    }
    case 'list': {
      const a = parse(commonArgs, raw);
      return run((nc) => listModelVersions(nc, a.role), a.nats);
    }
    default:
      process.stderr.write(`flywheel models: unknown subcommand ${JSON.stringify(sub ?? '')}\n${MODELS_USAGE}\n`);
      return 2;
  }
}

function parse<T extends z.ZodTypeAny>(schema: T, raw: unknown): z.infer<T> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new TypeError(`flywheel models: ${issue.path.length ? `--${issue.path.join('.')}: ` : ''}${issue.message}\n${MODELS_USAGE}`);
  }
  return r.data;
}
