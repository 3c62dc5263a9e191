// The ragtune web page: pick a knowledge base, upload, watch jobs, chat with streamed cited answers, give feedback.
"use strict";

const FORMATS_EN = "PDF, Word, PowerPoint, Excel, CSV, HTML, EPUB, Markdown, text, JSON, code, zip";
const FORMATS_ZH = "PDF、Word、PowerPoint、Excel、CSV、HTML、EPUB、Markdown、文本、JSON、代码、zip";

const STRINGS = {
  en: {
    skip: "Skip to the question", language: "Language", apiKey: "API key", saveKey: "Use key",
    knowledgeBase: "Knowledge base", pickKb: "Pick a knowledge base", newKb: "New knowledge base", name: "Name",
    create: "Create", upload: "Upload documents", chooseFiles: `Files (${FORMATS_EN})`,
    uploadButton: "Upload", jobs: "Ingestion jobs", documents: "Documents", chat: "Chat", question: "Your question",
    ask: "Ask", close: "Close", sources: "Sources", page: "page", up: "Helpful", down: "Not helpful",
    corrected: "Corrected answer (optional)", comment: "Comment (optional)", send: "Send feedback",
    thanks: "Thanks for the feedback", queued: "queued", running: "running", done: "done", failed: "failed",
    noKb: "No knowledge base yet", uploaded: "Uploaded; ingesting in the background",
    chunk: "chunk", chunks: "chunks", refused: "Not found in the knowledge base", noFiles: "Choose files first",
    thinking: "…", newChat: "New chat", delete: "Delete", deleteDoc: "Delete {name}", quoted: "Quoted from the sources",
    confirmDelete: "Delete {name} and its chunks from the knowledge base?", deleted: "Deleted {name}",
    noDocs: "No documents yet", noJobs: "No ingestion jobs yet", emptyDoc: "no text",
    welcome: "Enter your API key to start (an admin creates one with 'ragtune keys create').",
    needKey: "Enter an API key first.", pickFirst: "Pick a knowledge base first.",
    readerNote: "This key can read and ask; uploading and deleting need a writer's key.",
    // Server errors by code: the server's English message is the fallback.
    err_missing_api_key: "Enter your API key to start (an admin creates one with 'ragtune keys create').",
    err_invalid_api_key: "This API key was not accepted — check it, or ask an admin for a new one.",
    err_wrong_kb: "This API key is for another knowledge base.",
    err_insufficient_role: "This API key's role does not allow that.",
    err_kb_not_found: "That knowledge base no longer exists.",
    err_kb_exists: "A knowledge base with that name exists already.",
    err_invalid_kb_name: "Use up to 64 letters, digits, '_', '-' or '.' for the name.",
    err_rate_limited: "Too many requests — wait a moment and try again.",
    err_request_too_large: "The upload is too large.", err_upload_too_large: "The upload is too large.",
    err_unsupported_file_type: "This file type is not supported.",
    err_llm_unavailable: "The language model is not answering — try again later.",
    err_network: "The server cannot be reached.",
  },
  zh: {
    skip: "跳到提问", language: "语言", apiKey: "API 密钥", saveKey: "使用密钥",
    knowledgeBase: "知识库", pickKb: "选择知识库", newKb: "新建知识库", name: "名称",
    create: "创建", upload: "上传文档", chooseFiles: `文件（${FORMATS_ZH}）`,
    uploadButton: "上传", jobs: "导入任务", documents: "文档", chat: "对话", question: "你的问题",
    ask: "提问", close: "关闭", sources: "来源", page: "页", up: "有帮助", down: "没帮助",
    corrected: "更正后的答案（可选）", comment: "备注（可选）", send: "提交反馈",
    thanks: "感谢反馈", queued: "排队中", running: "进行中", done: "完成", failed: "失败",
    noKb: "还没有知识库", uploaded: "已上传，正在后台导入",
    chunk: "个片段", chunks: "个片段", refused: "知识库中没有找到答案", noFiles: "请先选择文件",
    thinking: "…", newChat: "新对话", delete: "删除", deleteDoc: "删除 {name}", quoted: "摘自资料原文",
    confirmDelete: "从知识库中删除 {name} 及其片段？", deleted: "已删除 {name}",
    noDocs: "还没有文档", noJobs: "还没有导入任务", emptyDoc: "无文本",
    welcome: "请输入 API 密钥开始使用（管理员可用 'ragtune keys create' 创建）。",
    needKey: "请先输入 API 密钥。", pickFirst: "请先选择知识库。",
    readerNote: "此密钥可以查看和提问；上传和删除需要写入权限的密钥。",
    err_missing_api_key: "请输入 API 密钥开始使用（管理员可用 'ragtune keys create' 创建）。",
    err_invalid_api_key: "此 API 密钥无效——请检查，或向管理员申请新的密钥。",
    err_wrong_kb: "此 API 密钥属于另一个知识库。",
    err_insufficient_role: "此 API 密钥的权限不允许该操作。",
    err_kb_not_found: "该知识库已不存在。",
    err_kb_exists: "同名知识库已存在。",
    err_invalid_kb_name: "名称最多 64 个字符，只能用字母、数字、'_'、'-' 或 '.'。",
    err_rate_limited: "请求太频繁——请稍后再试。",
    err_request_too_large: "上传的文件太大。", err_upload_too_large: "上传的文件太大。",
    err_unsupported_file_type: "不支持此文件类型。",
    err_llm_unavailable: "语言模型没有响应——请稍后再试。",
    err_network: "无法连接服务器。",
  },
};

const ROLES = ["reader", "writer", "admin"];
const HISTORY_TURNS = 6;
const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem("ragtune.lang") || (navigator.language.startsWith("zh") ? "zh" : "en");
let apiKey = localStorage.getItem("ragtune.key") || "";
let me = null;  // the key's {id, role, kb} from GET /v1/me
let polling = null;
let jobsData = [];
let docsData = [];
let keyProblem = null;  // what the key message says: {key} or an error {code, message}
let chat = [];  // this KB's turns: {question, answer?, error?}

const t = (key, values = {}) => (STRINGS[lang][key] || STRINGS.en[key] || key)
  .replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");
const countChunks = (n) => (lang === "zh" ? `${n} ${t("chunks")}` : `${n} ${n === 1 ? t("chunk") : t("chunks")}`);

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// A server error in the page's language when we know its code; else the server's own words.
const problem = (error) => ({ code: error.code || null, message: error.message || String(error) });
const explain = (p) => (p.code && STRINGS.en[`err_${p.code}`] ? t(`err_${p.code}`) : p.message);

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  $("lang").value = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  renderKeyMessage();
  renderJobs();
  renderDocuments();
  renderChat();
}

function say(text) {
  $("status").textContent = text;
  if (text) setTimeout(() => { if ($("status").textContent === text) $("status").textContent = ""; }, 4000);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError(0, "network", e.message);
  }
  if (!response.ok) {
    let error = { code: null, message: `HTTP ${response.status}` };
    try { error = (await response.json()).error; } catch (e) { /* not JSON */ }
    throw new ApiError(response.status, error.code, error.message);
  }
  return response;
}

// ---------------------------------------------------------------- the key and what it may do

function renderKeyMessage() {
  const box = $("key-message");
  box.hidden = !keyProblem;
  box.classList.toggle("error", Boolean(keyProblem && keyProblem.error));
  box.textContent = keyProblem ? (keyProblem.key ? t(keyProblem.key) : explain(keyProblem)) : "";
  $("apikey").setAttribute("aria-invalid", keyProblem && keyProblem.error ? "true" : "false");
}

function may(role, kb = currentKb()) {
  if (!me || ROLES.indexOf(me.role) < ROLES.indexOf(role)) return false;
  return me.kb === "*" || me.kb === kb;
}

function applyRole() {
  $("kb").disabled = !me;
  $("create-box").hidden = !(may("admin") && me.kb === "*");  // a key for one KB can create no other
  $("upload-box").hidden = !may("writer");
  renderDocuments();
}

async function identify() {
  try {
    me = await (await api("/v1/me")).json();
    keyProblem = null;
    renderKeyMessage();
    await loadKbs();
  } catch (e) {
    me = null;
    $("kb").replaceChildren();
    chat = []; jobsData = []; docsData = [];
    renderChat(); renderJobs(); renderDocuments();
    if (e.status === 401 && !apiKey) keyProblem = { key: "welcome" };
    else keyProblem = Object.assign({ error: true }, problem(e));
    renderKeyMessage();
    applyRole();
    $("apikey").focus();
  }
}

function useKey(event) {
  event.preventDefault();
  apiKey = $("apikey").value.trim();
  if (!apiKey) {
    keyProblem = { key: "needKey", error: true };
    renderKeyMessage();
    $("apikey").focus();
    return;
  }
  localStorage.setItem("ragtune.key", apiKey);
  identify();
}

// ---------------------------------------------------------------- knowledge bases, jobs, documents

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
  } catch (e) { say(explain(problem(e))); }
}

async function refreshKb() {
  applyRole();
  loadChat();
  if (!currentKb()) return;
  localStorage.setItem("ragtune.kb", currentKb());
  await Promise.all([loadJobs(), loadDocuments()]);
}

async function loadDocuments() {
  docsData = (await (await api(`/v1/kbs/${currentKb()}/documents`)).json()).data;
  renderDocuments();
}

function renderDocuments() {
  const list = $("documents");
  if (!me || !currentKb()) { list.replaceChildren(); return; }
  if (!docsData.length) {
    const li = document.createElement("li"); li.className = "empty"; li.textContent = t("noDocs");
    list.replaceChildren(li);
    return;
  }
  const writer = may("writer");
  list.replaceChildren(...docsData.map((d) => {
    const li = document.createElement("li");
    li.dataset.document = d.id;
    const label = document.createElement("span");
    label.className = "doc-name";
    label.textContent = `${d.name} — ${countChunks(d.chunks)}` + (d.status === "ok" && !d.chunks ? ` (${t("emptyDoc")})` : "");
    li.append(label);
    if (d.status === "failed") { li.classList.add("error"); label.textContent += ` (${t("failed")}: ${d.error})`; }
    if (writer) {
      const remove = document.createElement("button");
      remove.type = "button"; remove.className = "plain delete"; remove.textContent = t("delete");
      remove.setAttribute("aria-label", t("deleteDoc", { name: d.name }));
      remove.addEventListener("click", () => deleteDocument(d));
      li.append(remove);
    }
    return li;
  }));
}

async function deleteDocument(doc) {
  if (!window.confirm(t("confirmDelete", { name: doc.name }))) return;
  try {
    await api(`/v1/kbs/${currentKb()}/documents/${doc.id}`, { method: "DELETE" });
    say(t("deleted", { name: doc.name }));
    await loadKbs(currentKb());
  } catch (e) { say(explain(problem(e))); }
}

async function loadJobs() {
  jobsData = (await (await api(`/v1/kbs/${currentKb()}/jobs`)).json()).data;
  renderJobs();
  const pending = jobsData.some((j) => j.status === "queued" || j.status === "running");
  if (pending && !polling) polling = setInterval(async () => {
    try { await loadJobs(); } catch (e) { say(explain(problem(e))); }
  }, 700);
  if (!pending && polling) { clearInterval(polling); polling = null; await loadKbs(currentKb()); }
}

function renderJobs() {
  const list = $("jobs");
  if (!me || !currentKb()) { list.replaceChildren(); return; }
  if (!jobsData.length) {
    const li = document.createElement("li"); li.className = "empty"; li.textContent = t("noJobs");
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(...jobsData.slice(0, 8).map((job) => {
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
}

async function upload() {
  const files = $("files").files;
  if (!files.length) { say(t("noFiles")); return; }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  try {
    const result = await (await api(`/v1/kbs/${currentKb()}/documents`, { method: "POST", body: form })).json();
    say(t("uploaded") + (result.rejected.length ? ` — ${result.rejected.map((r) => explain(r.code ? r : { message: r.error })).join("; ")}` : ""));
    $("files").value = "";
    await loadJobs();
  } catch (e) { say(explain(problem(e))); }
}

async function createKb() {
  const name = $("new-kb").value.trim();
  if (!name) return;
  try {
    await api("/v1/kbs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }) });
    await loadKbs(name);
  } catch (e) { say(explain(problem(e))); }
}

// ---------------------------------------------------------------- chat, kept in the browser per knowledge base

const chatKey = () => `ragtune.chat.${currentKb()}`;

function loadChat() {
  try { chat = currentKb() ? JSON.parse(localStorage.getItem(chatKey()) || "[]") : []; } catch (e) { chat = []; }
  renderChat();
}

function saveChat() {
  // Finished turns only, without their DOM nodes.
  const finished = chat.filter((turn) => turn.answer || turn.error);
  if (currentKb()) localStorage.setItem(chatKey(), JSON.stringify(finished, (k, v) => (k === "view" ? undefined : v)));
}

function newChat() {
  chat = [];
  if (currentKb()) localStorage.removeItem(chatKey());
  renderChat();
  $("question").focus();
}

function renderChat() {
  $("messages").replaceChildren(...chat.flatMap((turn) => renderTurn(turn)));
}

function renderTurn(turn) {
  const userLi = document.createElement("li");
  userLi.className = "user"; userLi.textContent = turn.question;
  const li = document.createElement("li");
  li.className = "assistant";
  const text = document.createElement("div");
  text.className = "answer-text";
  li.append(text);
  turn.view = { li, text };
  if (turn.error) {
    text.textContent = explain(turn.error); text.classList.add("error");
  } else if (turn.answer) {
    showAnswer(turn);
  } else {
    text.textContent = turn.streamed || t("thinking");
  }
  return [userLi, li];
}

const ICONS = {
  up: "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3",
  down: "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
};

function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("width", "18"); svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true"); svg.setAttribute("focusable", "false");
  svg.classList.add("icon", `icon-${name}`);
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

function citations(turn) {
  const numbers = new Set(turn.answer.sources.map((s) => s.number));
  return { has: (n) => numbers.has(n), open: (n) => showSource(turn.answer.sources.find((s) => s.number === n)) };
}

function showAnswer(turn) {
  const { li, text } = turn.view;
  const answer = turn.answer;
  li.dataset.answerId = answer.answer_id;
  li.classList.toggle("refused", answer.refused);
  text.classList.remove("error");
  text.replaceChildren(Markdown.render(answer.answer, citations(turn)));
  li.querySelectorAll(".sources-block, .feedback, .mode").forEach((el) => el.remove());
  if (answer.mode === "extractive") {
    const badge = document.createElement("div"); badge.className = "mode meta"; badge.textContent = t("quoted");
    li.insertBefore(badge, text);
  }
  renderSources(li, answer.sources.filter((s) => s.cited || answer.refused));
  renderFeedback(li, turn);
}

function showSource(source) {
  if (!source) return;
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
  const block = document.createElement("div");
  block.className = "sources-block";
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
  block.append(heading, list);
  li.append(block);
}

function renderFeedback(li, turn) {
  const kb = currentKb();
  const answerId = turn.answer.answer_id;
  const box = document.createElement("div");
  box.className = "feedback";
  const up = document.createElement("button");
  const down = document.createElement("button");
  up.type = down.type = "button";
  up.append(icon("up")); down.append(icon("down"));
  up.setAttribute("aria-label", t("up")); down.setAttribute("aria-label", t("down"));
  up.title = t("up"); down.title = t("down");
  up.setAttribute("aria-pressed", String(turn.rating === "up"));
  down.setAttribute("aria-pressed", String(turn.rating === "down"));
  if (turn.rating) {
    const done = document.createElement("span"); done.className = "thanks"; done.textContent = t("thanks");
    box.append(up, down, done);
    li.append(box);
    return;
  }
  const send = async (rating, corrected, comment) => {
    try {
      await api("/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ kb, answer_id: answerId, rating, corrected_answer: corrected || null, comment: comment || null }) });
      turn.rating = rating;
      saveChat();
      showAnswer(turn);
    } catch (e) { say(explain(problem(e))); }
  };
  up.addEventListener("click", () => send("up"));
  down.addEventListener("click", () => {
    if (box.querySelector("textarea")) return;
    const form = document.createElement("form");
    const id = `c-${answerId}`;
    const correctedLabel = document.createElement("label"); correctedLabel.htmlFor = id; correctedLabel.textContent = t("corrected");
    const corrected = document.createElement("textarea"); corrected.id = id; corrected.rows = 2;
    const commentLabel = document.createElement("label"); commentLabel.htmlFor = `${id}-n`; commentLabel.textContent = t("comment");
    const comment = document.createElement("input"); comment.id = `${id}-n`;
    const submit = document.createElement("button"); submit.type = "submit"; submit.textContent = t("send");
    form.append(correctedLabel, corrected, commentLabel, comment, submit);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send("down", corrected.value, comment.value);
    });
    box.append(form);
    corrected.focus();
  });
  box.append(up, down);
  li.append(box);
}

function history() {
  return chat.filter((turn) => turn.answer && !turn.answer.refused).slice(-HISTORY_TURNS).flatMap((turn) => [
    { role: "user", content: turn.question }, { role: "assistant", content: turn.answer.answer }]);
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  if (!me) {
    keyProblem = { key: apiKey ? "err_invalid_api_key" : "needKey", error: true };
    renderKeyMessage();
    $("apikey").focus();
    return;
  }
  const kb = currentKb();
  if (!kb) { say(t("pickFirst")); return; }
  const previous = history();
  $("question").value = "";
  const turn = { question };
  chat.push(turn);
  $("messages").append(...renderTurn(turn));
  const { text } = turn.view;
  $("ask").disabled = true;
  let streamed = "";
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: `kb:${kb}`, messages: [...previous, { role: "user", content: question }], stream: true }),
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
        if (chunk.error) throw new ApiError(200, chunk.error.code, chunk.error.message);
        const delta = chunk.choices[0].delta.content;
        if (delta) { streamed += delta; turn.streamed = streamed; text.replaceChildren(Markdown.render(streamed)); }
        if (chunk.choices[0].finish_reason) final = chunk;
      }
    }
    if (final) {
      turn.answer = { answer: final.answer, answer_id: final.answer_id, refused: final.refused, sources: final.sources,
        mode: final.mode };
      delete turn.streamed;
      showAnswer(turn);
    }
  } catch (e) {
    turn.error = problem(e);
    text.textContent = explain(turn.error); text.classList.add("error");
  } finally {
    saveChat();
    $("ask").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("apikey").value = apiKey;
  applyLanguage();
  $("lang").addEventListener("change", () => {
    lang = $("lang").value;
    localStorage.setItem("ragtune.lang", lang);
    say("");  // a passing notice was in the other language
    applyLanguage();
  });
  $("key-form").addEventListener("submit", useKey);
  $("apikey").addEventListener("input", () => { if (keyProblem && keyProblem.error) { keyProblem = null; renderKeyMessage(); } });
  $("kb").addEventListener("change", refreshKb);
  $("upload").addEventListener("click", upload);
  $("create-kb").addEventListener("click", createKb);
  $("new-chat").addEventListener("click", newChat);
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask-form").requestSubmit(); } });
  identify();
});
