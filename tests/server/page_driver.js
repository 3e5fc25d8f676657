// tests/server/page_driver.js BASE_URL PROMPT [SEED] [KEY] — runs the <script> of
// web/index.html in node against a running server with a minimal DOM stand-in (and an
// in-memory localStorage holding KEY as the stored API key when given), waits for /info,
// submits the form once and prints as JSON: {"progress": [bar values seen], "status": ...,
// "images": N, "downloads": [download names], "error": bool, "model": the model line,
// "description": ..., "examples": [button texts], "placeholder": ..., "keyHidden": bool,
// "authorization": the header the POST carried, "body": the POST body as sent}.
const fs = require("fs");
const [base, prompt, seed, key] = process.argv.slice(2);
const html = fs.readFileSync(__dirname + "/../../web/index.html", "utf8");
const script = html.slice(html.indexOf("<script>") + 8, html.indexOf("</script>"));
const els = {}, seen = [];
const element = (id) => ({
  id, value: "", hidden: true, disabled: false, className: "", textContent: "", children: [],
  max: 0, placeholder: "", innerHTML: "", handlers: {},
  addEventListener(ev, fn) { this.handlers[ev] = fn; },
  replaceChildren(...c) { this.children = c; },
  querySelector: () => ({}),
});
const el = (id) => els[id] || (els[id] = element(id));
const bar = el("bar");
let barValue = 0;
Object.defineProperty(bar, "value", { get: () => barValue, set: (v) => { barValue = v; seen.push(v); } });
global.document = { getElementById: el, createElement: () => element(null) };
const items = key ? { "dalle-server.api-key": key } : {};
global.localStorage = { getItem: (k) => items[k] ?? null, setItem: (k, v) => { items[k] = v; } };
const realFetch = fetch;
let sent = {};
global.fetch = (url, opts) => {
  if (opts && opts.method === "POST") sent = { headers: opts.headers, body: opts.body };
  return realFetch(base + url, opts);
};
el("prompt").value = prompt;
el("n").value = "2";
el("seed").value = seed || "";
eval(script);
(async () => {
  for (let i = 0; i < 1000 && !el("n").max; i++) await new Promise((r) => setTimeout(r, 10));
  await el("form").handlers.submit({ preventDefault() {} });
  const grid = el("grid").children;
  console.log(JSON.stringify({
    progress: seen, status: el("status").textContent, images: grid.length,
    downloads: grid.map((f) => (/download="([^"]*)"/.exec(f.innerHTML) || [])[1]),
    error: el("status").className === "error", model: el("model").textContent,
    description: el("description").textContent, placeholder: el("prompt").placeholder,
    examples: el("examples").children.map((b) => b.textContent), keyHidden: el("keybox").hidden,
    authorization: (sent.headers || {}).Authorization || null, body: sent.body || null,
  }));
})();
