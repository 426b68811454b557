/**
 * Small file helpers shared by the checkpoint readers: exact positional reads into aligned buffers, JSON files,
 * existence checks. Every failure is a ModelLoadError naming the file. No parsing of model formats here.
 */
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { errorReason, ModelLoadError } from './model-load.error';

/** Reads exactly `length` bytes at `position` into a fresh, 8-byte-aligned buffer; short reads are errors. */
export async function readExactly(fh: FileHandle, file: string, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.from(new ArrayBuffer(length));
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new ModelLoadError(`unexpected end of file reading ${length} bytes at byte ${position} (truncated?)`, file);
    }
    done += bytesRead;
  }
  return buf;
}

export async function openForRead(file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r');
  } catch (err) {
    throw new ModelLoadError(`cannot open (${errorReason(err)})`, file, {
      cause: err,
    });
  }
}

export async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

export async function readJsonFile(file: string): Promise<unknown> {
  return parseJsonText(await readTextFile(file), file);
}

export async function readTextFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ModelLoadError(`cannot read (${errorReason(err)})`, file, {
      cause: err,
    });
  }
}

/** `text` (read from `file`) as JSON, or a ModelLoadError naming the file. */
export function parseJsonText(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelLoadError(`not valid JSON (${errorReason(err)})`, file, { cause: err });
  }
}
