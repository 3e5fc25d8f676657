// tests/server/page_driver.js BASE_URL PROMPT — runs the <script> of web/index.html in node
// against a running server with a minimal DOM stand-in, submits the form once and prints
// {"progress": [bar values seen], "status": ..., "images": N, "error": bool} as JSON.
const fs = require("fs");
const [base, prompt] = process.argv.slice(2);
const html = fs.readFileSync(__dirname + "/../../web/index.html", "utf8");
const script = html.slice(html.indexOf("<script>") + 8, html.indexOf("</script>"));
const els = {}, seen = [];
const el = (id) => els[id] || (els[id] = {
  id, value: "", hidden: true, disabled: false, className: "", textContent: "", children: [],
  max: 0, handlers: {},
  addEventListener(ev, fn) { this.handlers[ev] = fn; },
  replaceChildren(...c) { this.children = c; },
});
const bar = el("bar");
let barValue = 0;
Object.defineProperty(bar, "value", { get: () => barValue, set: (v) => { barValue = v; seen.push(v); } });
global.document = {
  getElementById: el,
  createElement: () => ({ innerHTML: "", querySelector: () => ({}) }),
};
const realFetch = fetch;
global.fetch = (url, opts) => realFetch(base + url, opts);
el("prompt").value = prompt;
el("n").value = "2";
eval(script);
el("form").handlers.submit({ preventDefault() {} }).then(() => {
  console.log(JSON.stringify({ progress: seen, status: el("status").textContent,
    images: el("grid").children.length, error: el("status").className === "error" }));
});
