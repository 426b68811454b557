/**
 * Builds a Moderator from files: the lexicon (data/lexicon.json), the policy (data/policy.default.json)
 * and the classifier artifact (data/model/model.json + weights.bin), each replaceable by a path. The
 * only file I/O of the library besides the seed-set reader; errors name the file at fault.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CompiledLexicon, lexiconSchema } from './lexicon.rules';
import { classifierMetaSchema, LinearClassifier } from './linear.classifier';
import { resolvePolicy, type ResolvedPolicy } from './moderation.policy';
import { Moderator } from './moderator';

/**
 * libs/moderation/data, from the TypeScript sources (libs/moderation/src) and from the compiled build
 * (dist/libs/moderation/src): the data is not copied into dist.
 */
export function moderationDataDir(): string {
  const candidates = [path.resolve(__dirname, '..', 'data'), path.resolve(__dirname, '..', '..', '..', '..', 'libs', 'moderation', 'data')];
  const found = candidates.find((d) => existsSync(path.join(d, 'lexicon.json')));
  if (!found) throw new Error(`moderation data not found (looked in ${candidates.join(', ')})`);
  return found;
}

export interface ModeratorFiles {
  /** Absent: the built-in files under libs/moderation/data. */
  lexiconPath?: string | null;
  policyPath?: string | null;
  modelDir?: string | null;
}

export class ModerationFileError extends Error {
  constructor(
    readonly file: 'lexicon' | 'policy' | 'model',
    readonly filePath: string,
    reason: string,
  ) {
    super(`${file} file ${filePath}: ${reason}`);
    this.name = 'ModerationFileError';
  }
}

function readJson(kind: ModerationFileError['file'], file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ModerationFileError(kind, file, (err as Error).message);
  }
}

function guard<T>(kind: ModerationFileError['file'], file: string, build: () => T): T {
  try {
    return build();
  } catch (err) {
    if (err instanceof ModerationFileError) throw err;
    const issue = (err as { issues?: Array<{ path: PropertyKey[]; message: string }> }).issues?.[0];
    const reason = issue ? `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}` : (err as Error).message;
    throw new ModerationFileError(kind, file, reason);
  }
}

export function loadPolicy(file: string): ResolvedPolicy {
  return guard('policy', file, () => resolvePolicy(readJson('policy', file)));
}

export function loadClassifier(dir: string): LinearClassifier {
  const metaFile = path.join(dir, 'model.json');
  return guard('model', metaFile, () => {
    const meta = classifierMetaSchema.parse(readJson('model', metaFile));
    const bytes = readFileSync(path.join(dir, 'weights.bin'));
    return new LinearClassifier(meta, new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
}

export function loadModerator(files: ModeratorFiles = {}): Moderator {
  const data = files.lexiconPath && files.policyPath && files.modelDir ? '' : moderationDataDir();
  const lexiconPath = files.lexiconPath ?? path.join(data, 'lexicon.json');
  const policyPath = files.policyPath ?? path.join(data, 'policy.default.json');
  const modelDir = files.modelDir ?? path.join(data, 'model');
  const policy = loadPolicy(policyPath);
  const lexiconFile = guard('lexicon', lexiconPath, () => lexiconSchema.parse(readJson('lexicon', lexiconPath)));
  guard('lexicon', lexiconPath, () => new CompiledLexicon(lexiconFile));
  const lexicon = guard('policy', policyPath, () => new CompiledLexicon({ ...lexiconFile, rules: [...lexiconFile.rules, ...policy.rules] }));
  const classifier = loadClassifier(modelDir);
  const modelId = `flywheel-moderation-${String(classifier.meta.training.version ?? 'dev')}`;
  return new Moderator({ lexicon, classifier, policy, modelId });
}
