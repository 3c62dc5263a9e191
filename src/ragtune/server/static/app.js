// The ragtune web page: pick a knowledge base, upload, watch jobs, chat with streamed cited answers, give feedback.
"use strict";

const STRINGS = {
  en: {
    skip: "Skip to the question", language: "Language", apiKey: "API key", saveKey: "Use key",
    knowledgeBase: "Knowledge base", pickKb: "Pick a knowledge base", newKb: "New knowledge base", name: "Name",
    create: "Create", upload: "Upload documents", chooseFiles: "Files (PDF, Word, HTML, Markdown, text, zip)",
    uploadButton: "Upload", jobs: "Ingestion jobs", documents: "Documents", chat: "Chat", question: "Your question",
    ask: "Ask", close: "Close", sources: "Sources", page: "page", up: "Helpful", down: "Not helpful",
    corrected: "Corrected answer (optional)", comment: "Comment (optional)", send: "Send feedback",
    thanks: "Thanks for the feedback", queued: "queued", running: "running", done: "done", failed: "failed",
    noKb: "No knowledge base yet", needKey: "Enter an API key first", uploaded: "Uploaded; ingesting in the background",
    chunks: "chunks", refused: "Not found in the knowledge base", noFiles: "Choose files first", thinking: "…",
    quoted: "Quoted from the sources",
  },
  zh: {
    skip: "跳到提问", language: "语言", apiKey: "API 密钥", saveKey: "使用密钥",
    knowledgeBase: "知识库", pickKb: "选择知识库", newKb: "新建知识库", name: "名称",
    create: "创建", upload: "上传文档", chooseFiles: "文件（PDF、Word、HTML、Markdown、文本、zip）",
    uploadButton: "上传", jobs: "导入任务", documents: "文档", chat: "对话", question: "你的问题",
    ask: "提问", close: "关闭", sources: "来源", page: "页", up: "有帮助", down: "没帮助",
    corrected: "更正后的答案（可选）", comment: "备注（可选）", send: "提交反馈",
    thanks: "感谢反馈", queued: "排队中", running: "进行中", done: "完成", failed: "失败",
    noKb: "还没有知识库", needKey: "请先输入 API 密钥", uploaded: "已上传，正在后台导入",
    chunks: "个片段", refused: "知识库中没有找到答案", noFiles: "请先选择文件", thinking: "…",
    quoted: "摘自资料原文",
  },
};

const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem("ragtune.lang") || (navigator.language.startsWith("zh") ? "zh" : "en");
let apiKey = localStorage.getItem("ragtune.key") || "";
let polling = null;
const t = (key) => STRINGS[lang][key] || STRINGS.en[key] || key;

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  $("lang").value = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
}

function say(text) { $("status").textContent = text; if (text) setTimeout(() => { if ($("status").textContent === text) $("status").textContent = ""; }, 4000); }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const currentKb = () => $("kb").value;

async function loadKbs(select) {
  try {
    const { data } = await (await api("/v1/kbs")).json();
    const kb = $("kb");
    kb.replaceChildren(...data.map((k) => new Option(`${k.name} (${k.documents})`, k.name)));
    if (!data.length) kb.append(new Option(t("noKb"), ""));
    const wanted = select || localStorage.getItem("ragtune.kb");
    if (wanted && data.some((k) => k.name === wanted)) kb.value = wanted;
    await refreshKb();
  } catch (e) { say(e.message); }
}

async function refreshKb() {
  if (!currentKb()) return;
  localStorage.setItem("ragtune.kb", currentKb());
  await Promise.all([loadJobs(), loadDocuments()]);
}

async function loadDocuments() {
  const { data } = await (await api(`/v1/kbs/${currentKb()}/documents`)).json();
  $("documents").replaceChildren(...data.map((d) => {
    const li = document.createElement("li");
    li.textContent = `${d.name} — ${d.chunks} ${t("chunks")}`;
    if (d.status === "failed") { li.classList.add("error"); li.textContent += ` (${d.error})`; }
    return li;
  }));
}

async function loadJobs() {
  const { data } = await (await api(`/v1/kbs/${currentKb()}/jobs`)).json();
  $("jobs").replaceChildren(...data.slice(0, 8).map((job) => {
    const li = document.createElement("li");
    li.dataset.status = job.status;
    li.dataset.job = job.id;
    const label = document.createElement("div");
    label.textContent = `${job.files.slice(0, 3).join(", ")}${job.files.length > 3 ? " …" : ""} — ${t(job.status)} ` +
      `${job.files_done}/${job.files_total}`;
    const bar = document.createElement("progress");
    bar.max = 1; bar.value = job.progress;
    bar.setAttribute("aria-label", label.textContent);
    li.append(label, bar);
    for (const err of job.errors) {
      const p = document.createElement("div"); p.className = "error"; p.textContent = `${err.file}: ${err.error}`; li.append(p);
    }
    if (job.error) { const p = document.createElement("div"); p.className = "error"; p.textContent = job.error; li.append(p); }
    return li;
  }));
  const pending = data.some((j) => j.status === "queued" || j.status === "running");
  if (pending && !polling) polling = setInterval(async () => {
    try { await loadJobs(); } catch (e) { say(e.message); }
  }, 700);
  if (!pending && polling) { clearInterval(polling); polling = null; await loadKbs(currentKb()); }
}

async function upload() {
  const files = $("files").files;
  if (!files.length) { say(t("noFiles")); return; }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  try {
    const result = await (await api(`/v1/kbs/${currentKb()}/documents`, { method: "POST", body: form })).json();
    say(t("uploaded") + (result.rejected.length ? ` — ${result.rejected.map((r) => r.error).join("; ")}` : ""));
    $("files").value = "";
    await loadJobs();
  } catch (e) { say(e.message); }
}

async function createKb() {
  const name = $("new-kb").value.trim();
  if (!name) return;
  try {
    await api("/v1/kbs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }) });
    await loadKbs(name);
  } catch (e) { say(e.message); }
}

function showSource(source) {
  $("source-title").textContent = `[${source.number}] ${source.name}`;
  const parts = [];
  if (source.page_number) parts.push(`${t("page")} ${source.page_number}`);
  if (source.sections && source.sections.length) parts.push(source.sections.join("; "));
  else if (source.section_title) parts.push(source.section_title);
  $("source-meta").textContent = parts.join(" · ");
  $("source-snippet").textContent = source.snippet;
  $("source-dialog").showModal();
}

function renderSources(li, sources) {
  if (!sources.length) return;
  const heading = document.createElement("div");
  heading.textContent = t("sources");
  const list = document.createElement("ol");
  list.className = "sources";
  for (const source of sources) {
    const item = document.createElement("li");
    item.value = source.number;
    const link = document.createElement("a");
    link.href = `#source-${source.number}`;
    link.className = "source-link";
    link.textContent = source.name + (source.page_number ? ` (${t("page")} ${source.page_number})` : "");
    link.addEventListener("click", (event) => { event.preventDefault(); showSource(source); });
    item.append(link);
    if (source.sections && source.sections.length) {
      const sections = document.createElement("span"); sections.className = "meta";
      sections.textContent = ` — ${source.sections.join("; ")}`;
      item.append(sections);
    }
    list.append(item);
  }
  li.append(heading, list);
}

function renderFeedback(li, kb, answerId) {
  const box = document.createElement("div");
  box.className = "feedback";
  const up = document.createElement("button");
  const down = document.createElement("button");
  up.type = down.type = "button";
  up.textContent = "👍"; down.textContent = "👎";
  up.setAttribute("aria-label", t("up")); down.setAttribute("aria-label", t("down"));
  up.setAttribute("aria-pressed", "false"); down.setAttribute("aria-pressed", "false");
  const send = async (rating, corrected, comment) => {
    try {
      await api("/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ kb, answer_id: answerId, rating, corrected_answer: corrected || null, comment: comment || null }) });
      (rating === "up" ? up : down).setAttribute("aria-pressed", "true");
      const done = document.createElement("span"); done.className = "thanks"; done.textContent = t("thanks");
      box.append(done);
    } catch (e) { say(e.message); }
  };
  up.addEventListener("click", () => send("up"));
  down.addEventListener("click", () => {
    if (box.querySelector("textarea")) return;
    const form = document.createElement("form");
    const id = `c-${answerId}`;
    form.innerHTML = `<label for="${id}"></label><textarea id="${id}" rows="2"></textarea>` +
      `<label for="${id}-n"></label><input id="${id}-n"><button type="submit"></button>`;
    form.querySelector(`label[for="${id}"]`).textContent = t("corrected");
    form.querySelector(`label[for="${id}-n"]`).textContent = t("comment");
    form.querySelector("button").textContent = t("send");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send("down", form.querySelector("textarea").value, form.querySelector("input").value);
      form.remove();
    });
    box.append(form);
  });
  box.append(up, down);
  li.append(box);
}

const history = [];

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  const kb = currentKb();
  if (!question || !kb) return;
  if (!apiKey) { say(t("needKey")); }
  $("question").value = "";
  const userLi = document.createElement("li"); userLi.className = "user"; userLi.textContent = question;
  const li = document.createElement("li"); li.className = "assistant";
  const text = document.createElement("div"); text.className = "answer-text"; text.textContent = t("thinking");
  li.append(text);
  $("messages").append(userLi, li);
  $("ask").disabled = true;
  let streamed = "";
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: `kb:${kb}`, messages: [...history, { role: "user", content: question }], stream: true }),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let final = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices[0].delta.content;
        if (delta) { streamed += delta; text.textContent = streamed; }
        if (chunk.choices[0].finish_reason) final = chunk;
      }
    }
    if (final) {
      text.textContent = final.answer;
      li.dataset.answerId = final.answer_id;
      if (final.refused) li.classList.add("refused");
      if (final.mode === "extractive") {
        const badge = document.createElement("div"); badge.className = "mode meta"; badge.textContent = t("quoted");
        li.insertBefore(badge, text);
      }
      renderSources(li, final.sources.filter((s) => s.cited || final.refused));
      renderFeedback(li, kb, final.answer_id);
      history.push({ role: "user", content: question }, { role: "assistant", content: final.answer });
    }
  } catch (e) {
    text.textContent = e.message; text.classList.add("error");
  } finally {
    $("ask").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  applyLanguage();
  $("apikey").value = apiKey;
  $("lang").addEventListener("change", () => { lang = $("lang").value; localStorage.setItem("ragtune.lang", lang); applyLanguage(); });
  $("save-key").addEventListener("click", () => { apiKey = $("apikey").value.trim(); localStorage.setItem("ragtune.key", apiKey); loadKbs(); });
  $("kb").addEventListener("change", refreshKb);
  $("upload").addEventListener("click", upload);
  $("create-kb").addEventListener("click", createKb);
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask-form").requestSubmit(); } });
  loadKbs();
});
