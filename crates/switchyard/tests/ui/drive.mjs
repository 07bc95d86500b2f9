// Drives the admin UI in headless Chromium for crates/switchyard/tests/ui.rs. Every wait is
// on a condition with a deadline (Playwright's own), never a fixed sleep. Exits non-zero on
// the first step that fails, saying which.
import { pathToFileURL } from "node:url";
import path from "node:path";

const { ADMIN_URL, HOOK_URL, ADMIN_TOKEN, PLAYWRIGHT_CORE, SCREENSHOTS, CHROMIUM } = process.env;
const { chromium } = await import(pathToFileURL(path.join(PLAYWRIGHT_CORE, "index.mjs")).href);

const WAIT = 30_000;
let step = "starting";
const say = (s) => { step = s; console.log("· " + s); };

async function post(body, key) {
  const res = await fetch(HOOK_URL, {
    method: "POST",
    headers: { "content-type": "application/json", "idempotency-key": key },
    body: JSON.stringify(body),
  });
  if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${await res.text()}`);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const failures = [];
let page = null;
try {
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => failures.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") console.log("  console: " + m.text()); });
  const shot = (name) => page.screenshot({ path: path.join(SCREENSHOTS, name + ".png"), fullPage: true });

  say("the overview asks for the token, then shows sources, routes and Prefect");
  await page.goto(ADMIN_URL + "/");
  await page.locator("#token-form").waitFor({ state: "visible" });
  await page.fill("#token", ADMIN_TOKEN);
  await page.click("#token-form button");
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.locator("td", { hasText: "orders" }).first().waitFor();
  await page.locator(".badge.ok", { hasText: "healthy" }).waitFor();
  await page.locator("#open-dead-letters", { hasText: "1" }).waitFor();
  await shot("overview");

  say("an event sent while the list is open appears without a reload");
  await page.click("nav a[data-page=events]");
  await page.locator("#live.on").waitFor();
  await page.evaluate(() => { window.__sameDocument = true; });
  await post({ kind: "ok", n: 7, customer: "<img src=x onerror=alert(1)>" }, "browser-1");
  const row = page.locator('tr[data-event="orders:browser-1"]');
  await row.waitFor();
  if (!(await page.evaluate(() => window.__sameDocument === true))) throw new Error("the page reloaded");
  // The run appears in the row once the route has run.
  await row.locator("td").nth(5).filter({ hasText: /\S/ }).waitFor();
  await shot("events");

  say("the event's timeline shows each route's decision, the run and its state");
  await row.locator("a").first().click();
  await page.locator("#timeline li", { hasText: "big-orders: run created" }).waitFor();
  await page.locator("#timeline li", { hasText: "needs-later: skipped" }).waitFor();
  await page.locator("tr.run .badge", { hasText: /scheduled|pending|running|completed/i }).waitFor();
  const link = await page.locator("tr.run a").getAttribute("href");
  if (!/\/runs\/flow-run\/[0-9a-f-]{36}$/.test(link)) throw new Error("run link " + link);
  // A hostile payload is shown as text, never as markup.
  if ((await page.locator("img").count()) !== 0) throw new Error("the payload became markup");
  await page.locator("pre.payload", { hasText: "<img src=x onerror=alert(1)>" }).waitFor();
  await shot("event");

  say("a dead letter is replayed with its button");
  await page.click("nav a[data-page=dead-letters]");
  const letter = page.locator("tr[data-dead-letter]").first();
  await letter.locator("td.reason").waitFor();
  await shot("dead-letters");
  await letter.locator("button.replay").click();
  await page.locator("#status", { hasText: /replayed/ }).waitFor();
  await page.locator("p.muted", { hasText: "No dead letters" }).waitFor();

  say("the triggers page shows the open window");
  await page.click("nav a[data-page=triggers]");
  await page.locator("section.trigger h2", { hasText: "repeated" }).waitFor();
  await page.locator("section.trigger p", { hasText: /\d+ open bucket/ }).waitFor();
  await shot("triggers");

  say("the live tap shows a decision as it happens");
  await page.click("nav a[data-page=tap]");
  await page.locator(".live.on").waitFor();
  await post({ kind: "ok", n: 8 }, "browser-2");
  await page.locator("#tap-lines li", { hasText: "big-orders" }).first().waitFor();
  await shot("tap");

  if (failures.length) throw new Error(failures.join("; "));
  console.log("ok: every page worked in " + (await browser.version()));
} catch (e) {
  console.log(`FAILED at "${step}": ${e.message}`);
  if (page) {
    const status = await page.locator("#status").textContent().catch(() => "");
    console.log(`  the page's status line: ${status}`);
    await page.screenshot({ path: path.join(SCREENSHOTS, "failure.png"), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
