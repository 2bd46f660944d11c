/** What the browser tests share: the stack's API with a worker behind it, and a headless Chromium. */
import type { Browser } from 'playwright-core';
import { stackApi } from './api.js';
import { launchChromium } from './chromium.js';
import type { TestStack } from './temporal.js';

export interface BrowserStack {
  base: string;
  browser: Browser;
  /** Closes the browser, the API and the worker. */
  stop: () => Promise<void>;
}

/**
 * The stack's API (bootstrap admin key `key` of tenant `tenant`; the trigger dispatcher on, so
 * runs triggered through the API start at once), a worker, and Chromium (a first run may install it).
 */
export async function browserStack(stack: TestStack, key: string, tenant: string): Promise<BrowserStack> {
  const { app, base } = await stackApi(stack, {
    env: { STRATA_BOOTSTRAP_ADMIN_KEY: key, STRATA_BOOTSTRAP_TENANT: tenant },
    dispatcher: undefined,
  });
  const stopWorker = await stack.startWorker();
  const browser = await launchChromium();
  return {
    base,
    browser,
    stop: async () => {
      await browser.close();
      await app.close();
      await stopWorker();
    },
  };
}
