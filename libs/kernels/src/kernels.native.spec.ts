/**
 * The native kernel tests (native/test/kernels_test.cpp, `npm run test:native`) as part of `npm test`: every kernel
 * against its naive reference on each SIMD path this CPU has (portable, AVX2, AVX-VNNI, AVX-512 VNNI, AMX), the paths
 * against each other bit for bit where they must be, and the thread pool. They are C++ with no Node in them, built
 * with the same compiler the addon needs; this spec builds and runs them and fails with their output. A path the CPU
 * lacks is skipped by the program itself, which prints a line saying so.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { findRepoRoot, nativeInfo } from '.';

const root = findRepoRoot(__dirname) ?? '.';

describe('native kernel tests', () => {
  it('pass on every SIMD path this CPU has', () => {
    let out: string;
    try {
      out = execFileSync('make', ['-s', '-C', path.join(root, 'native', 'test'), 'test'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 600_000,
      });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`native kernel tests failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    }
    for (const line of out.split('\n').filter((l) => l.startsWith('skipped'))) console.log(line);
    expect(out).toContain('all native kernel tests passed');
    expect(out).not.toContain('FAIL');
  }, 660_000);

  // The addon picks its int8 dot by the CPU's flags, as Linux reports them; the env switches step down a level.
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/));
  const off = (name: string): boolean => !['', '0', undefined].includes(process.env[name]);
  (flags.has('avx2') ? it : it.skip)('uses the int8 dot products the CPU flags allow', () => {
    const avx512 = ['avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni'].every((f) => flags.has(f)) && !off('FLYWHEEL_NATIVE_NO_AVX512');
    const avxVnni = flags.has('avx_vnni') && !off('FLYWHEEL_NATIVE_NO_AVXVNNI');
    const portable = off('FLYWHEEL_NATIVE_PORTABLE');
    expect(nativeInfo().int8Dot).toBe(portable ? 'portable' : avx512 ? 'avx512-vnni' : avxVnni ? 'avx-vnni' : 'avx2');
    // AMX sits on the AVX-512 path; Linux lists amx_tile and amx_int8 only where it can hand out the tile state.
    const amx = flags.has('amx_tile') && flags.has('amx_int8') && avx512 && !portable && !off('FLYWHEEL_NATIVE_NO_AMX');
    expect(nativeInfo().amx).toBe(amx);
  });
});
