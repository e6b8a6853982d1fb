// Shared helpers for the end-to-end tests: start todo-api, talk to Better Auth,
// take tokens apart, call todo-api.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));

export const TODO_API_BIN = process.env.TODO_API_BIN
  ? resolve(process.env.TODO_API_BIN)
  : resolve(HERE, "../../target/release/todo-api");

/** A random BETTER_AUTH_SECRET for this run (Better Auth wants >= 32 chars). */
export function newSecret() {
  return randomBytes(32).toString("hex");
}

/** A short random tag to keep emails unique per run (the DB may be reused). */
export function runTag() {
  return randomBytes(4).toString("hex");
}

// ---------------------------------------------------------------- todo-api

/**
 * Starts the todo-api binary with PORT=0 in a fresh temp dir (so no stray
 * ./.env is read) and resolves once it logs `listening on http://HOST:PORT`.
 * @returns {Promise<{url: string, logs: () => string, stop: () => Promise<number|null>}>}
 */
export async function startTodoApi({ authUrl, secret, corsOrigins, extraEnv = {} }) {
  if (!existsSync(TODO_API_BIN)) {
    throw new Error(`todo-api binary not found at ${TODO_API_BIN} (set TODO_API_BIN)`);
  }
  const workDir = mkdtempSync(join(tmpdir(), "todo-api-e2e-"));
  const databaseUrl = process.env.E2E_DATABASE_URL || `sqlite:${join(workDir, "e2e.db")}`;
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME ?? workDir,
    DATABASE_URL: databaseUrl,
    HOST: "127.0.0.1",
    PORT: "0",
    BETTER_AUTH_URL: authUrl,
    BETTER_AUTH_SECRET: secret,
    CORS_ORIGINS: corsOrigins.join(","),
    RUST_LOG: "info",
    ...extraEnv,
  };
  const child = spawn(TODO_API_BIN, [], { cwd: workDir, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise((res) => child.once("exit", (code) => res(code)));

  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`todo-api did not start in 30 s:\n${output}`)), 30_000);
    const onData = () => {
      const m = output.match(/listening on (http:\/\/[^\s"']+)/);
      if (m) {
        clearTimeout(timer);
        child.stderr.off("data", onData);
        res(m[1].replace(/\/$/, ""));
      }
    };
    child.stderr.on("data", onData);
    child.stdout.on("data", onData);
    exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`todo-api exited with ${code} before listening:\n${output}`));
    });
  });

  return {
    url,
    logs: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      let timer;
      const timeout = new Promise((res) => (timer = setTimeout(() => res("timeout"), 10_000)));
      const code = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (code === "timeout") {
        child.kill("SIGKILL");
        await exited;
      }
      rmSync(workDir, { recursive: true, force: true });
      return code === "timeout" ? null : code;
    },
  };
}

export function sleep(ms) {
  return new Promise((res) => setTimeout(res, ms));
}

/**
 * One HTTP call to todo-api.
 * @returns {Promise<{status: number, headers: Headers, body: any, text: string}>}
 */
export async function call(baseUrl, method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h["content-type"] = "application/json";
  const res = await fetch(baseUrl + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

// ---------------------------------------------------------------- Better Auth

/** The `name=value` pairs of a response's Set-Cookie headers, as a Map. */
function setCookies(res) {
  const jar = new Map();
  for (const line of res.headers.getSetCookie()) {
    const pair = line.split(";")[0];
    const eq = pair.indexOf("=");
    jar.set(pair.slice(0, eq).trim(), decodeURIComponent(pair.slice(eq + 1)));
  }
  return jar;
}

function cookieHeader(jar) {
  return [...jar].map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("; ");
}

/**
 * Reads the session_data cookie (possibly chunked as name.0, name.1, ...).
 * Better Auth names it `better-auth.session_data` (`__Secure-` prefixed on https).
 */
export function sessionDataFrom(jar) {
  for (const name of ["better-auth.session_data", "__Secure-better-auth.session_data"]) {
    if (jar.has(name)) return jar.get(name);
    const chunks = [...jar.keys()]
      .filter((k) => k.startsWith(`${name}.`))
      .sort((a, b) => Number(a.split(".").pop()) - Number(b.split(".").pop()));
    if (chunks.length) return chunks.map((k) => jar.get(k)).join("");
  }
  return undefined;
}

/**
 * Signs a user up through Better Auth's HTTP API (with an Origin header, which
 * Better Auth 1.7 requires on POSTs), then fetches their EdDSA JWT from
 * /api/auth/token.
 * @returns {Promise<{id: string, email: string, name: string, jwt: string, sessionData: string, cookie: string}>}
 */
export async function signUp(authUrl, { email, password = "correct-horse-battery", name }) {
  const res = await fetch(`${authUrl}/api/auth/sign-up/email`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: authUrl },
    body: JSON.stringify({ email, password, name }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`sign-up ${email}: ${res.status} ${text}`);
  const { user } = JSON.parse(text);
  const jar = setCookies(res);
  const sessionData = sessionDataFrom(jar);
  if (!sessionData) throw new Error(`sign-up ${email}: no session_data cookie in ${[...jar.keys()]}`);
  const cookie = cookieHeader(jar);
  const jwt = await fetchJwt(authUrl, cookie);
  return { id: user.id, email: user.email, name: user.name, jwt, sessionData, cookie };
}

/** GET /api/auth/token with the session cookie: Better Auth's JWT plugin token. */
export async function fetchJwt(authUrl, cookie) {
  const res = await fetch(`${authUrl}/api/auth/token`, { headers: { cookie } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`/api/auth/token: ${res.status} ${text}`);
  return JSON.parse(text).token;
}

// ---------------------------------------------------------------- JWTs

/** { header, payload } of a compact JWS, without verifying anything. */
export function decodeJwt(token) {
  const [h, p] = token.split(".");
  const dec = (s) => JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
  return { header: dec(h), payload: dec(p) };
}

/** The same token with one character in the middle of its payload changed. */
export function tamperPayload(token) {
  const [h, p, s] = token.split(".");
  const i = Math.floor(p.length / 2);
  const swapped = p[i] === "A" ? "B" : "A";
  return [h, p.slice(0, i) + swapped + p.slice(i + 1), s].join(".");
}
