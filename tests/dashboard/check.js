// Loads the dashboard of a running job in headless Chromium and checks that the job graph
// is drawn from the plan and that the live numbers change.
//
//   node tests/dashboard/check.js URL VERTICES
//
// playwright-core comes from WEIR_NODE_MODULES (default ~/.cache/weir/node/node_modules;
// `.ci/run` installs it there); Chromium is Debian's (/usr/bin/chromium, or WEIR_CHROMIUM).
"use strict";
const path = require("path");
const os = require("os");

const modules = process.env.WEIR_NODE_MODULES || path.join(os.homedir(), ".cache/weir/node/node_modules");
const { chromium } = require(path.join(modules, "playwright-core"));

function check(cond, what) {
  if (!cond) throw new Error("dashboard check failed: " + what);
}

(async () => {
  const [url, vertices] = [process.argv[2], Number(process.argv[3])];
  const browser = await chromium.launch({
    executablePath: process.env.WEIR_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", e => errors.push(String(e)));
    await page.goto(url);
    // The graph: one box per vertex, edges labelled with their partitioning.
    await page.waitForFunction(n => document.querySelectorAll("#graph g.vertex").length === n, vertices, { timeout: 15000 });
    const labels = await page.$$eval("#graph text.elabel", ts => ts.map(t => t.textContent));
    check(labels.length === vertices - 1, "one edge label per edge: " + JSON.stringify(labels));
    check(labels.includes("HASH"), "a keyed edge is labelled HASH: " + JSON.stringify(labels));
    const graphText = await page.$eval("#graph", g => g.textContent);
    check(/parallelism \d+/.test(graphText), "parallelism shown: " + graphText);
    // Live numbers: the records read go up between two looks, and rates appear.
    await page.waitForFunction(() => document.getElementById("records-read-total").textContent !== "0", null, { timeout: 15000 });
    const first = await page.$eval("#records-read-total", e => e.textContent);
    await page.waitForFunction(f => document.getElementById("records-read-total").textContent !== f, first, { timeout: 15000 });
    const second = await page.$eval("#records-read-total", e => e.textContent);
    await page.waitForFunction(() => [...document.querySelectorAll("#graph text.live")].some(t => /in [0-9.]+ ?[kMG]?\/s/.test(t.textContent) && !/in –/.test(t.textContent)), null, { timeout: 15000 });
    const rows = await page.$$eval("#vertices tbody tr", r => r.length);
    check(rows === vertices, "a table row per vertex: " + rows);
    const slots = await page.$$eval("#slots tbody tr", r => r.length);
    check(slots >= 1, "slots listed");
    const state = await page.$eval("#job-state", e => e.textContent);
    check(state === "RUNNING", "state " + state);
    check(errors.length === 0, "no script errors: " + errors.join("; "));
    // WEIR_DASHBOARD_SCREENSHOT=FILE.png keeps a picture of the page.
    if (process.env.WEIR_DASHBOARD_SCREENSHOT) {
      await page.screenshot({ path: process.env.WEIR_DASHBOARD_SCREENSHOT, fullPage: true });
    }
    console.log(JSON.stringify({ ok: true, first, second, rows, slots, labels }));
  } finally {
    await browser.close();
  }
})().catch(e => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});
