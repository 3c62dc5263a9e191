// The "Improve" view: the knowledge base's loop — feedback counts, each stage's champion, every decision, a plot
// of each metric across versions, and (for admins) a button that queues a loop run. It reads the key, the
// language and the knowledge base from the page (app.js) and keeps to its own section.
"use strict";

(() => {
  const STRINGS = {
    en: {
      improve: "Improve", notSetUp: "The loop of this knowledge base is not set up yet. On the server, run:",
      feedback: "Feedback", up: "helpful", down: "not helpful", corrections: "corrections",
      heldOut: "held out for evaluation", evalSet: "Eval set", questions: "questions",
      stage: "Stage", champion: "Champion", versions: "Versions", newFeedback: "New feedback", last: "Last decision",
      decisions: "Decisions", noDecisions: "No decisions yet.", run: "Run the loop", queued: "Loop run queued",
      running: "running", done: "done", failed: "failed", promoted: "promoted", rejected: "rejected",
      waiting: "waiting for data", abandoned: "abandoned", "rolled back": "rolled back", metrics: "Metrics across versions",
      championLine: "champion", challengerLine: "challenger", on: "on", off: "off", vs: "vs",
      jobProgress: "Loop run {state}: {step}", interrupted: "A run was interrupted; the next run resumes it.",
    },
    zh: {
      improve: "改进", notSetUp: "此知识库的闭环尚未设置。请在服务器上运行：",
      feedback: "反馈", up: "有帮助", down: "没帮助", corrections: "更正",
      heldOut: "留作评测", evalSet: "评测集", questions: "个问题",
      stage: "阶段", champion: "当前版本", versions: "版本数", newFeedback: "新反馈", last: "最近决定",
      decisions: "决定记录", noDecisions: "还没有决定。", run: "运行闭环", queued: "闭环任务已排队",
      running: "进行中", done: "完成", failed: "失败", promoted: "已采用", rejected: "已拒绝",
      waiting: "等待更多数据", abandoned: "已放弃", "rolled back": "已回滚", metrics: "各版本的指标",
      championLine: "当前版本", challengerLine: "候选版本", on: "开", off: "关", vs: "对比",
      jobProgress: "闭环任务{state}：{step}", interrupted: "上次运行被中断；下次运行会继续。",
    },
  };
  const STAGE_NAMES = {
    en: { embedder: "embedder", reranker: "reranker", llm: "LLM adapter", demonstrations: "demonstrations" },
    zh: { embedder: "向量模型", reranker: "重排模型", llm: "LLM 适配器", demonstrations: "示例" },
  };
  const $ = (id) => document.getElementById(id);
  const lang = () => ($("lang").value === "zh" ? "zh" : "en");
  const t = (key, values = {}) => (STRINGS[lang()][key] || STRINGS.en[key] || key)
    .replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");
  const stageName = (name) => STAGE_NAMES[lang()][name] || name;
  let data = null;
  let polling = null;
  let loading = null;

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  async function api(path, options = {}) {
    const key = localStorage.getItem("ragtune.key") || "";
    const headers = Object.assign({}, options.headers || {}, key ? { Authorization: `Bearer ${key}` } : {});
    const response = await fetch(path, Object.assign({}, options, { headers }));
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    return body;
  }

  async function load() {
    const kb = $("kb").value;
    const section = $("improve");
    if (!kb || !localStorage.getItem("ragtune.key")) { section.hidden = true; return; }
    const wanted = kb;
    try {
      const result = await api(`/v1/loop?kb=${encodeURIComponent(kb)}`);
      if ($("kb").value !== wanted) return;  // the user picked another knowledge base meanwhile
      data = result;
      section.hidden = false;
      render();
      const busy = data.jobs.some((j) => j.status === "queued" || j.status === "running");
      if (busy && !polling) polling = setInterval(load, 1500);
      if (!busy && polling) { clearInterval(polling); polling = null; }
    } catch (e) {
      section.hidden = true;
    }
  }

  function render() {
    $("improve-heading").textContent = t("improve");
    const body = $("improve-body");
    if (!data.initialised) {
      body.replaceChildren(el("p", { text: t("notSetUp") }), el("pre", { text: `ragtune loop init --kb ${data.kb}` }),
        el("p", { class: "meta", text: `${t("feedback")}: ${data.feedback.up} ${t("up")} · ${data.feedback.down} ${t("down")}` }));
      return;
    }
    const fb = data.feedback;
    const parts = [
      el("p", { class: "loop-feedback", text: `${t("feedback")}: 👍 ${fb.up} ${t("up")} · 👎 ${fb.down} ${t("down")} · ` +
        `${fb.corrections} ${t("corrections")} · ${fb.held_out} ${t("heldOut")} — ${t("evalSet")}: ${data.evalset.rows} ${t("questions")}` }),
      stagesTable(), runBox(), decisionsList(), plots(),
    ];
    body.replaceChildren(...parts);
  }

  function stagesTable() {
    const head = el("tr", {}, ...["stage", "champion", "versions", "newFeedback", "last"].map((k) => el("th", { scope: "col", text: t(k) })));
    const rows = Object.entries(data.stages).map(([name, s]) => el("tr", { "data-stage": name, class: s.enabled ? "" : "disabled" },
      el("th", { scope: "row", text: `${stageName(name)} (${s.enabled ? t("on") : t("off")})` }),
      el("td", { text: s.champion || "?" }), el("td", { text: String(s.versions) }), el("td", { text: String(s.new_feedback) }),
      el("td", { text: s.last ? `${t(s.last.verdict)} ${s.last.challenger || ""}` : "" })));
    return el("div", { class: "table-wrap" }, el("table", { class: "loop-stages" }, el("thead", {}, head), el("tbody", {}, ...rows)));
  }

  function runBox() {
    const box = el("div", { class: "loop-run" });
    const job = data.jobs[0];
    if (data.can_run) {
      const busy = job && (job.status === "queued" || job.status === "running");
      const button = el("button", { type: "button", id: "loop-run", text: t("run") });
      button.disabled = busy;
      button.addEventListener("click", runLoop);
      box.append(button);
    }
    if (job) {
      const step = job.current || (job.report && job.report.run) || job.error || "";
      const line = el("div", { class: `loop-job ${job.status}`, "data-status": job.status, text: t("jobProgress", { state: t(job.status), step }) });
      box.append(line);
      if (job.status === "running" && job.files_total) {
        const bar = el("progress", { max: String(job.files_total) }); bar.value = job.files_done; box.append(bar);
      }
    }
    if (data.active_run && !(job && job.status === "running")) box.append(el("div", { class: "meta", text: t("interrupted") }));
    return box;
  }

  async function runLoop() {
    try {
      await api("/v1/loop/run", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ kb: $("kb").value }) });
      $("status").textContent = t("queued");
      await load();
    } catch (e) { $("status").textContent = e.message; }
  }

  const decisions = () => data.history.filter((h) => h.kind === "decision" || h.kind === "rollback");

  function decisionsList() {
    const items = decisions().slice().reverse().slice(0, 12).map((d) => {
      const target = d.target || {};
      const detail = target.measured ? ` — ${target.metric} ${signed(target.difference)} [${signed(target.low)}, ${signed(target.high)}]` : "";
      const versions = d.challenger ? ` ${d.challenger}${d.champion ? ` ${t("vs")} ${d.champion}` : ""}` : "";
      return el("li", { "data-verdict": d.verdict },
        el("span", { class: "meta", text: `${(d.time || "").slice(0, 16).replace("T", " ")} ` }),
        el("strong", { text: stageName(d.stage) }), document.createTextNode(versions + ": "),
        el("span", { class: `verdict ${d.verdict.replace(" ", "-")}`, text: t(d.verdict) }),
        document.createTextNode(detail),
        ...(d.why || []).slice(0, 3).map((w) => el("div", { class: "meta why", text: w })));
    });
    return el("div", {}, el("h3", { text: t("decisions") }),
      items.length ? el("ol", { class: "loop-decisions" }, ...items) : el("p", { class: "meta", text: t("noDecisions") }));
  }

  const signed = (x) => (x === null || x === undefined ? "?" : `${x >= 0 ? "+" : ""}${Number(x).toFixed(3)}`);

  function plots() {
    const wrap = el("div", { class: "loop-plots" }, el("h3", { text: t("metrics") }));
    for (const stage of Object.keys(data.stages)) {
      const runs = decisions().filter((d) => d.stage === stage && d.metrics);
      if (!runs.length) continue;
      const names = [...new Set(runs.flatMap((d) => Object.keys(d.metrics)))]
        .filter((m) => runs.some((d) => d.metrics[m] && (d.metrics[m].champion !== null || d.metrics[m].challenger !== null)));
      for (const metric of names) wrap.append(chart(stage, metric, runs));
    }
    return wrap;
  }

  // One small chart: the champion's and the challenger's value of one metric at each decision of a stage.
  function chart(stage, metric, runs) {
    const W = 260, H = 120, P = 28;
    const values = runs.flatMap((d) => [d.metrics[metric].champion, d.metrics[metric].challenger]).filter((v) => v !== null && v !== undefined);
    let lo = Math.min(...values), hi = Math.max(...values);
    if (hi === lo) { const pad = Math.abs(hi) * 0.05 || 0.05; hi += pad; lo -= pad; }
    const x = (i) => P + (runs.length === 1 ? (W - 2 * P) / 2 : (i * (W - 2 * P)) / (runs.length - 1));
    const y = (v) => H - P + 8 - ((v - lo) / (hi - lo)) * (H - 2 * P);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("role", "img");
    svg.setAttribute("class", "loop-chart"); svg.dataset.stage = stage; svg.dataset.metric = metric;
    const label = `${stageName(stage)} — ${metric}: ` + runs.map((d) => `${d.run || d.stage} ${t("championLine")} ${fmt(d.metrics[metric].champion)}, ${t("challengerLine")} ${fmt(d.metrics[metric].challenger)} (${t(d.verdict)})`).join("; ");
    svg.setAttribute("aria-label", label);
    const ns = (tag, attrs) => { const n = document.createElementNS("http://www.w3.org/2000/svg", tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); return n; };
    svg.append(ns("text", { x: 4, y: 12, class: "chart-title" }));
    svg.lastChild.textContent = `${stageName(stage)} · ${metric}`;
    svg.append(ns("text", { x: 2, y: y(hi) + 4, class: "chart-axis" })); svg.lastChild.textContent = fmt(hi);
    svg.append(ns("text", { x: 2, y: y(lo) + 4, class: "chart-axis" })); svg.lastChild.textContent = fmt(lo);
    for (const [series, cls] of [["champion", "champion"], ["challenger", "challenger"]]) {
      const points = runs.map((d, i) => [i, d.metrics[metric][series]]).filter(([, v]) => v !== null && v !== undefined);
      if (points.length > 1) svg.append(ns("polyline", { points: points.map(([i, v]) => `${x(i)},${y(v)}`).join(" "), class: `line ${cls}` }));
      for (const [i, v] of points) {
        const promoted = series === "challenger" && runs[i].verdict === "promoted";
        const dot = ns("circle", { cx: x(i), cy: y(v), r: promoted ? 4.5 : 3, class: `dot ${cls}${promoted ? " promoted" : ""}` });
        const tip = ns("title", {}); tip.textContent = `${runs[i].run || ""} ${t(series === "champion" ? "championLine" : "challengerLine")}: ${fmt(v)}`;
        dot.append(tip);
        svg.append(dot);
      }
    }
    const legend = el("div", { class: "chart-legend meta" }, el("span", { class: "key champion", text: t("championLine") }),
      el("span", { class: "key challenger", text: t("challengerLine") }));
    return el("figure", { class: "loop-figure" }, svg, legend);
  }

  const fmt = (v) => (v === null || v === undefined ? "?" : Math.abs(v) >= 100 ? Math.round(v).toString() : Number(v).toFixed(3));

  function schedule() {
    clearTimeout(loading);
    loading = setTimeout(load, 50);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("kb").addEventListener("change", schedule);
    $("lang").addEventListener("change", () => { if (data) render(); });
    $("key-form").addEventListener("submit", () => setTimeout(schedule, 300));
    // app.js fills the knowledge-base list after checking the key: follow it.
    new MutationObserver(schedule).observe($("kb"), { childList: true });
  });
})();
