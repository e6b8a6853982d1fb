// End-to-end in a real browser: headless Chromium loads a page from Better
// Auth's origin (http://localhost:<authport>/). The page's own JavaScript signs
// up / in through Better Auth, takes a JWT from /api/auth/token and calls
// todo-api CROSS-ORIGIN (http://127.0.0.1:<apiport>) with it.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startAuthServer } from "./auth-server.mjs";
import { call, fetchJwt, newSecret, runTag, startTodoApi } from "./helpers.mjs";

const TARGET_DIR = fileURLToPath(new URL("../../target/", import.meta.url));
const SCREENSHOT = join(TARGET_DIR, "e2e-browser.png");
const CHROMIUM = process.env.E2E_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const SECRET = newSecret();
const EMAIL = `browser-${runTag()}@example.com`;
const PASSWORD = "correct-horse-battery";

let auth;
let api;
let context;
let page;
let userDataDir;
const consoleLines = [];

before(async () => {
  auth = await startAuthServer({ secret: SECRET });
  api = await startTodoApi({ authUrl: auth.url, secret: SECRET, corsOrigins: [auth.origin] });
  assert.notEqual(new URL(api.url).origin, auth.origin, "todo-api is on another origin than the page");
  userDataDir = mkdtempSync(join(tmpdir(), "e2e-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 900, height: 760 },
  });
  context.setDefaultTimeout(5_000);
  context.setDefaultNavigationTimeout(15_000);
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (!["verbose", "debug"].includes(m.type())) consoleLines.push(`[${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
});

after(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  const code = await api?.stop();
  if (api) {
    mkdirSync(TARGET_DIR, { recursive: true });
    const log = `${api.logs()}\n(exit code ${code})\n\n--- browser console ---\n${consoleLines.join("\n")}\n`;
    writeFileSync(join(TARGET_DIR, "e2e-browser-todo-api.log"), log);
  }
  await auth?.close();
});

// ------------------------------------------------------------- page helpers

/** Clicks, waits until the page's action has finished, and checks it showed no error. */
async function click(selector) {
  await page.click(selector);
  await page.waitForFunction(() => document.body.dataset.busy === "0");
  const error = await page.textContent("#error");
  assert.equal(error, "", `no error shown after clicking ${selector} (console: ${consoleLines.slice(-5).join(" | ")})`);
}

const text = (selector) => page.textContent(selector);
const taskTitles = () => page.$$eval("#tasks li .title", (els) => els.map((e) => e.textContent));
const taskStates = () => page.$$eval("#tasks li .state", (els) => els.map((e) => e.textContent));
const taskRow = (title) => page.locator("#tasks li", { hasText: title });

// The steps build on each other: after the first failure the rest are skipped
// rather than each timing out on a page in the wrong state.
let failedStep = null;
function step(name, fn) {
  it(name, async (t) => {
    if (failedStep) return t.skip(`skipped: "${failedStep}" failed`);
    try {
      await fn();
    } catch (err) {
      failedStep = name;
      throw err;
    }
  });
}

// ------------------------------------------------------------- the flow

describe("browser: Better Auth page drives todo-api cross-origin", () => {
  step("loads the page from Better Auth's origin", async () => {
    await page.goto(`${auth.url}/?api=${encodeURIComponent(api.url)}`);
    await page.waitForFunction(() => document.body.dataset.ready === "1");
    assert.equal(new URL(page.url()).origin, auth.origin, "page origin is Better Auth's");
    assert.equal(await text("#api-origin"), api.url, "the page knows todo-api's URL");
  });

  step("signs up through Better Auth and gets an EdDSA JWT for the same user id", async () => {
    await page.fill("#email", EMAIL);
    await page.fill("#password", PASSWORD);
    await click("#signup");
    assert.match(await text("#whoami"), new RegExp(`Signed in as ${EMAIL}`), "the page shows the signed-in user");
    assert.match(await text("#token-info"), /^EdDSA kid=\S+ sub=\S+/, "the page holds an EdDSA JWT");
    const [userId, sub] = await page.evaluate(() => [document.body.dataset.userId, document.body.dataset.sub]);
    assert.equal(sub, userId, "the JWT's sub is the Better Auth user id");
    assert.equal(await text("#count"), "0 tasks", "a new user has no tasks");
  });

  step("adds tasks", async () => {
    await page.fill("#new-title", "Buy milk");
    await click("#add");
    await page.fill("#new-title", "Walk the dog");
    await click("#add");
    assert.deepEqual(await taskTitles(), ["Buy milk", "Walk the dog"], "both tasks are listed");
    assert.deepEqual(await taskStates(), ["open", "open"], "new tasks are open");
  });

  step("toggles a task", async () => {
    await taskRow("Buy milk").locator("button.toggle").click();
    await page.waitForFunction(() => document.body.dataset.busy === "0");
    assert.equal(await text("#error"), "", "no error after toggle");
    assert.deepEqual(await taskStates(), ["done", "open"], "Buy milk is done");
  });

  step("updates a task's title", async () => {
    await page.fill("#edit-title", "Buy oat milk");
    await taskRow("Buy milk").locator("button.rename").click();
    await page.waitForFunction(() => document.body.dataset.busy === "0");
    assert.equal(await text("#error"), "", "no error after rename");
    assert.deepEqual(await taskTitles(), ["Buy oat milk", "Walk the dog"], "the title changed");
    assert.deepEqual(await taskStates(), ["done", "open"], "rename kept the completed state");
  });

  step("signs out and back in: the same tasks come back", async () => {
    await click("#signout");
    assert.equal(await text("#count"), "0 tasks", "signed out: nothing listed");
    await click("#signin");
    assert.match(await text("#whoami"), new RegExp(`Signed in as ${EMAIL}`), "signed in again");
    assert.deepEqual(await taskTitles(), ["Buy oat milk", "Walk the dog"], "the tasks are there after signing in again");
  });

  step("deletes a task", async () => {
    await taskRow("Walk the dog").locator("button.delete").click();
    await page.waitForFunction(() => document.body.dataset.busy === "0");
    assert.equal(await text("#error"), "", "no error after delete");
    assert.deepEqual(await taskTitles(), ["Buy oat milk"], "only Buy oat milk is left");
  });

  step("reads a 401 body from JavaScript (CORS headers on errors)", async () => {
    await click("#probe-401");
    assert.match(await text("#probe-401-result"), /^401 \S/, "JavaScript saw the 401 and its detail");
  });

  step("reads a 404 body from JavaScript (CORS headers on errors)", async () => {
    await click("#probe-404");
    assert.match(await text("#probe-404-result"), /^404 \S/, "JavaScript saw the 404 and its detail");
  });

  step("what the page shows is what todo-api stores for that Better Auth user", async () => {
    const signIn = await fetch(`${auth.url}/api/auth/sign-in/email`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: auth.url },
      body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
    });
    assert.equal(signIn.status, 200, "sign-in from Node");
    const cookie = signIn.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
    const res = await call(api.url, "GET", "/api/tasks", { token: await fetchJwt(auth.url, cookie) });
    assert.equal(res.status, 200, `list status (body ${res.text})`);
    assert.deepEqual(res.body.map((t) => [t.title, t.completed]), [["Buy oat milk", true]], "todo-api holds exactly the task shown");
  });

  it("saves a screenshot (also after a failed step)", async () => {
    mkdirSync(TARGET_DIR, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });
});
