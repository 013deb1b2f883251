// Headless Chromium against `gameserver local`: load the dice page, get a dev token, join a
// room, bet, and wait until the bet is settled and its round's server seed is revealed and
// verified by the page. Then the connection drops right after a second bet is acknowledged: the
// page's client (static/gamefleet-client.js) reconnects, resumes the room and receives that
// bet's settlement. Usage: node dice-page.test.mjs <path to gameserver binary>, or
// node dice-page.test.mjs <URL of a page already served> (e.g. the sandbox's demo fleet).
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const bin = process.argv[2] || process.env.GAMESERVER_BIN;
if (!bin) {
  console.error("usage: node dice-page.test.mjs <path to gameserver binary | page URL>");
  process.exit(2);
}
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const deadline = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());

function startServer() {
  const child = spawn(
    bin,
    ["local", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--betting-window-ms", "1500"],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" } },
  );
  const url = new Promise((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`gameserver exited early with ${code}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(/open (http:\/\/\S+\/)/);
      if (m) resolve(m[1]);
    });
  });
  return { child, url: Promise.race([url, deadline(20000, "gameserver did not print its URL")]) };
}

async function main() {
  const server = /^https?:\/\//.test(bin) ? { url: Promise.resolve(bin), child: null } : startServer();
  let browser;
  try {
    const url = await server.url;
    console.log(`dice page at ${url}`);
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
      ],
    });
    const page = await browser.newPage();
    const failures = [];
    page.on("pageerror", (e) => failures.push(e.message));
    await page.goto(url);

    await signIn(page, "browser-player");
    await page.click("#join");
    await page.waitForFunction(
      () => document.getElementById("room-status").textContent === "joined dice-1", null, { timeout: 10000 },
    );
    // A second player joins from another page: the first hears of it in a presence frame.
    const other = await browser.newPage();
    await other.goto(url);
    await signIn(other, "second-player");
    await other.click("#join");
    await page.waitForFunction(
      () => document.getElementById("players").textContent === "2 player(s)" &&
        document.getElementById("log").textContent.includes("joined: second-player"),
      null, { timeout: 10000 },
    );
    await other.close();
    await page.waitForFunction(
      () => document.getElementById("players").textContent === "1 player(s)" &&
        document.getElementById("log").textContent.includes("left: second-player"),
      null, { timeout: 10000 },
    );
    console.log("presence: a second player's join and leave were shown");
    await page.fill("#amount", "250");
    await page.fill("#target", "50.00");
    await page.click("#bet");
    await page.waitForSelector("#bets tr", { timeout: 5000 });
    // Acknowledged, then settled by the engine in the next round.
    await page.waitForFunction(
      () => ["processing", "won", "lost"].includes(document.querySelector("#bets tr .status").textContent),
      null, { timeout: 10000 },
    );
    await page.waitForSelector("#bets tr[data-settled=true]", { timeout: 30000 });
    const bet = await page.$eval("#bets tr[data-settled=true]", (row) => ({
      roundId: row.dataset.roundId,
      status: row.querySelector(".status").textContent,
      roll: row.querySelector(".roll").textContent,
    }));
    if (!["won", "lost"].includes(bet.status)) throw new Error(`unexpected bet status ${bet.status}`);
    console.log(`bet settled: ${bet.status} on roll ${bet.roll} in round ${bet.roundId}`);

    // The round's seed is revealed and the page re-derived the roll from it.
    await page.waitForFunction(
      (roundId) => {
        const seed = document.getElementById("server-seed");
        const verified = document.getElementById("verified");
        return seed.dataset.roundId === roundId && /^[0-9a-f]{64}$/.test(seed.textContent) &&
          verified.dataset.roundId === roundId && verified.textContent !== "";
      },
      bet.roundId, { timeout: 15000 },
    );
    const verdict = await page.textContent("#verified");
    const seed = await page.textContent("#server-seed");
    if (verdict !== "verified ✓") throw new Error(`page verification said: ${verdict}`);
    const balance = await page.textContent("#balance");
    if (!/^\d+\.\d\d$/.test(balance)) throw new Error(`balance not shown: ${balance}`);
    if (failures.length) throw new Error(`page errors: ${failures.join("; ")}`);
    console.log(`revealed server seed ${seed} verified; balance ${balance}`);

    // Drop the connection after the next bet is acknowledged; the client resumes by itself.
    const settledBefore = await page.$$eval("#bets tr[data-settled=true]", (rows) => rows.length);
    await page.click("#bet");
    await page.waitForFunction(
      () => document.querySelector("#bets tr .status").textContent === "processing", null, { timeout: 10000 },
    );
    await page.evaluate(() => window.gameFleet.simulateDrop());
    await page.waitForFunction(
      () => document.getElementById("status").textContent === "resumed (dice-1 recovered)",
      null, { timeout: 10000 },
    );
    await page.waitForFunction(
      (n) => document.querySelectorAll("#bets tr[data-settled=true]").length === n + 1,
      settledBefore, { timeout: 30000 },
    );
    if (failures.length) throw new Error(`page errors: ${failures.join("; ")}`);
    console.log("connection dropped after an acknowledged bet: resumed, bet settled");
    console.log("browser test passed");
  } finally {
    if (browser) await browser.close();
    if (server.child) server.child.kill("SIGINT");
  }
}

/// Connects the page as `user` (a dev token) and waits until it is authenticated.
async function signIn(page, user) {
  await page.fill("#user", user);
  await page.click("#connect");
  await page.waitForFunction(
    (u) => document.getElementById("status").textContent === `authenticated as ${u}`,
    user, { timeout: 10000 },
  );
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`browser test FAILED: ${e.stack || e}`);
    process.exit(1);
  },
);
