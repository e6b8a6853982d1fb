// A real Better Auth server for the end-to-end tests of todo-api.
//
// - email + password sign-up / sign-in, the `jwt()` plugin (EdDSA tokens at
//   /api/auth/token, public keys at /api/auth/jwks);
// - session.cookieCache with strategy "jwt", so the `better-auth.session_data`
//   cookie is an HS256 JWT signed with BETTER_AUTH_SECRET;
// - Better Auth's in-memory adapter: keys and users live as long as the process,
//   so a test run must use one instance throughout;
// - a small static page at / (same origin as Better Auth) used by the browser test.
//
// In-process:  const { url, close } = await startAuthServer({ secret });
// Standalone:  BETTER_AUTH_SECRET=... PORT=3000 node auth-server.mjs

import http from "node:http";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { jwt } from "better-auth/plugins";
import { toNodeHandler } from "better-auth/node";

const PAGE_PATH = fileURLToPath(new URL("./page.html", import.meta.url));

function createAuth({ baseURL, secret, trustedOrigins }) {
  const db = { user: [], session: [], account: [], verification: [], jwks: [] };
  return betterAuth({
    appName: "todo-api e2e",
    baseURL,
    secret,
    trustedOrigins,
    database: memoryAdapter(db),
    emailAndPassword: { enabled: true },
    session: { cookieCache: { enabled: true, strategy: "jwt", maxAge: 300 } },
    plugins: [jwt()],
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    logger: { level: process.env.E2E_AUTH_LOG ?? "error" },
  });
}

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server.address().port);
    });
  });
}

function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

async function servePage(res) {
  const html = await readFile(PAGE_PATH);
  res.writeHead(200, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
  });
  res.end(html);
}

/**
 * Starts Better Auth on http://localhost:<port> (port 0 = a free one).
 * Listens on 127.0.0.1 and, when possible, on [::1] with the same port, since
 * "localhost" may resolve to either.
 * @returns {Promise<{url: string, origin: string, port: number, auth: object, close: () => Promise<void>}>}
 */
export async function startAuthServer({
  secret = process.env.BETTER_AUTH_SECRET,
  port = 0,
  extraTrustedOrigins = [],
} = {}) {
  if (!secret || secret.length < 32) {
    throw new Error("startAuthServer: a secret of at least 32 characters is required");
  }
  let handler = (_req, res) => {
    res.writeHead(503).end();
  };
  const onRequest = (req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (req.method === "GET" && (path === "/" || path === "/index.html")) {
      servePage(res).catch(() => res.writeHead(500).end());
      return;
    }
    handler(req, res);
  };

  const v4 = http.createServer(onRequest);
  const realPort = await listen(v4, port, "127.0.0.1");
  const servers = [v4];
  const v6 = http.createServer(onRequest);
  try {
    await listen(v6, realPort, "::1");
    servers.push(v6);
  } catch {
    // No IPv6 loopback, or the port is taken there: 127.0.0.1 alone will do.
  }

  const url = `http://localhost:${realPort}`;
  const trustedOrigins = [url, `http://127.0.0.1:${realPort}`, ...extraTrustedOrigins];
  const auth = createAuth({ baseURL: url, secret, trustedOrigins });
  handler = toNodeHandler(auth);

  return {
    url,
    origin: url,
    port: realPort,
    auth,
    close: async () => {
      await Promise.all(servers.map(closeServer));
    },
  };
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const server = await startAuthServer({
    secret: process.env.BETTER_AUTH_SECRET,
    port: Number(process.env.PORT ?? 3000),
    extraTrustedOrigins: (process.env.TRUSTED_ORIGINS ?? "").split(",").filter(Boolean),
  });
  console.log(`better-auth listening on ${server.url}`);
  const stop = () => server.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
