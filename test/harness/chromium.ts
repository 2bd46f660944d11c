/**
 * The Chromium the run-page test drives: STRATA_CHROMIUM, else Debian's `/usr/bin/chromium`,
 * installed from Debian's `chromium` package the first time when missing and this process
 * may (Debian, root), with progress while it installs. Anywhere else a missing Chromium is
 * an error that says what to install or set.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { runWithProgress } from '../../workers/go-tool.js';

export const DEBIAN_CHROMIUM = '/usr/bin/chromium';

/** How long a first install may take (the test's hook allows this much). */
export const CHROMIUM_INSTALL_TIMEOUT_MS = 15 * 60_000;

export async function findOrInstallChromium(log: (msg: string) => void = (m) => console.error(m)): Promise<string> {
  const given = process.env.STRATA_CHROMIUM;
  if (given) {
    if (!existsSync(given))
      throw new Error(`STRATA_CHROMIUM=${given} does not exist: point it at a Chromium binary or unset it`);
    return given;
  }
  if (existsSync(DEBIAN_CHROMIUM)) return DEBIAN_CHROMIUM;
  const debian = existsSync('/etc/debian_version');
  const root = process.getuid?.() === 0;
  if (!debian || !root)
    throw new Error(
      `no Chromium at ${DEBIAN_CHROMIUM} and this test setup installs one only on Debian as root` +
        ` (here: ${debian ? 'Debian' : 'not Debian'}, ${root ? 'root' : 'not root'}):` +
        ` install Chromium (Debian/Ubuntu: apt-get install chromium) or set STRATA_CHROMIUM to a Chromium binary`,
    );
  log(`Installing Chromium from Debian's chromium package (first time only; takes a minute or two)…`);
  const started = Date.now();
  try {
    // Wait for another apt to finish rather than failing on its lock.
    const lock = ['-o', 'DPkg::Lock::Timeout=300'];
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await runWithProgress('apt-get', [...lock, 'update', '-qq'], { env, doing: 'updating the package lists', log });
    await runWithProgress('apt-get', [...lock, 'install', '-y', '-qq', '--no-install-recommends', 'chromium'], {
      env,
      doing: 'installing chromium',
      log,
    });
  } catch (e) {
    throw new Error(
      `could not install Chromium with apt-get: ${(e as Error).message}. Install it yourself (apt-get install chromium) or set STRATA_CHROMIUM`,
    );
  }
  if (!existsSync(DEBIAN_CHROMIUM))
    throw new Error(
      `apt-get installed chromium but there is no ${DEBIAN_CHROMIUM}: set STRATA_CHROMIUM to the Chromium binary`,
    );
  log(`Chromium installed in ${Math.round((Date.now() - started) / 1000)} s.`);
  return DEBIAN_CHROMIUM;
}

/** Headless Chromium for the browser tests: found (or installed) as above, launched quietly. */
export async function launchChromium(): Promise<Browser> {
  const executablePath = await findOrInstallChromium();
  return chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
