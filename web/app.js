// app.js — hearth's chat page: model picker, streaming chat over the Ollama-compatible
// /api/chat, conversations in localStorage, per-chat settings, error display.
//
// Everything the server or the model says reaches the DOM through textContent (md.js for
// replies), never innerHTML. Conversations never leave the browser except as the messages
// of a chat request to the same origin.

import { renderMarkdown } from './md.js';

const $ = (id) => document.getElementById(id);
const ui = {
  app: $('app'), sidebar: $('sidebar'), scrim: $('scrim'), list: $('chat-list'),
  model: $('model'), info: $('model-info'), banner: $('banner'), scroller: $('scroller'),
  messages: $('messages'), empty: $('empty'), composer: $('composer'), input: $('input'),
  send: $('send'), stop: $('stop'), attach: $('attach'), file: $('file'),
  attachments: $('attachments'), settings: $('settings'), form: $('settings-form'),
  theme: $('theme'),
};

const KEY_CHAT = 'hearth.chat.';      // + chat id: one key per chat
const KEY_LEGACY = 'hearth.chats.v1'; // all chats in one key (older pages): read once, then removed
const KEY_CURRENT = 'hearth.current';
const KEY_MODEL = 'hearth.model';
const KEY_APIKEY = 'hearth.apikey';
const KEY_THEME = 'hearth.theme';
const SETTING_KEYS = ['temperature', 'top_p', 'top_k', 'min_p', 'num_predict', 'num_ctx', 'seed'];
const INT_KEYS = new Set(['top_k', 'num_predict', 'num_ctx', 'seed']);

const state = {
  chats: [],          // newest first; each {id, title, model, created, updated, settings, messages}
  chat: null,         // the open chat (may be an unsaved draft)
  models: [],         // /api/tags models
  loaded: new Set(),  // names from /api/ps
  show: new Map(),    // model name -> /api/show result (or a pending promise)
  gens: new Map(),    // chat -> {controller, msg} while its reply streams (also in the background)
  pending: [],        // data: URLs of images attached to the next message
  nodes: new WeakMap(), // message object -> its DOM node
};

// ---- storage ------------------------------------------------------------------------------

function lsGet(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch (_) { return fallback; }
}

function lsSet(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch (_) { return false; }
}

const worthKeeping = (c) => c.messages.length > 0 || Object.keys(c.settings || {}).length > 0;

// Each chat is stored under its own key (KEY_CHAT + id) and a tab writes only the chats it
// changed: two open tabs then cannot overwrite each other's chats (each hears of the other's
// writes through the `storage` event), and one chat too big for the quota cannot keep the
// others from being saved.
function saveChat(c) {
  const key = KEY_CHAT + c.id;
  if (c === state.chat) lsSet(KEY_CURRENT, worthKeeping(c) && !c.deleted ? c.id : null);
  if (c.deleted || !worthKeeping(c)) { lsRemove(key); return; }
  if (lsSet(key, c)) return;
  // Most likely the quota: images are the big part, so keep the text and say so.
  const slim = { ...c, messages: c.messages.map(({ images, ...m }) => m) };
  if (lsSet(key, slim)) showBanner('warn', 'Browser storage is full', `Images in “${c.title}” were not saved.`);
  else showBanner('warn', 'Browser storage is full', `“${c.title}” is too big to save (other chats are saved). Export it to keep it, or delete old chats to make room.`);
}

function lsRemove(key) {
  try { localStorage.removeItem(key); } catch (_) { /* storage off */ }
}

// A chat as read from storage, or null when it is not one.
function readChat(c) {
  if (!c || typeof c.id !== 'string' || !Array.isArray(c.messages)) return null;
  return { title: 'Untitled', settings: {}, ...c, messages: c.messages.filter((m) => m && typeof m.content === 'string') };
}

const byUpdated = (a, b) => (b.updated || 0) - (a.updated || 0);

function loadChats() {
  const chats = [];
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      const c = k.startsWith(KEY_CHAT) && readChat(lsGet(k, null));
      if (c) chats.push(c);
    }
  } catch (_) { /* storage off */ }
  // Older pages kept every chat under one key: move them to their own keys.
  const legacy = lsGet(KEY_LEGACY, null);
  lsRemove(KEY_LEGACY);
  for (const c of (Array.isArray(legacy) ? legacy : []).map(readChat)) {
    if (c && !chats.some((x) => x.id === c.id)) { chats.push(c); saveChat(c); }
  }
  // A reply still streaming when its page went away (or streaming now in another tab, which
  // saves it when it ends: the storage event then brings the whole reply).
  for (const c of chats) {
    for (const m of c.messages) {
      if (m.pending && !m.error && !m.stopped) m.error = { kind: 'cutoff', title: 'The reply is incomplete', detail: 'the page was closed or reloaded while it streamed.' };
      delete m.pending;
    }
  }
  state.chats = chats.sort(byUpdated);
}

// Another tab saved or deleted a chat: take its version.
function onStorage(e) {
  if (e.storageArea !== localStorage || !e.key || !e.key.startsWith(KEY_CHAT)) return;
  const id = e.key.slice(KEY_CHAT.length);
  const old = state.chats.find((c) => c.id === id);
  const c = e.newValue === null ? null : readChat(lsGet(e.key, null));
  if (old && state.gens.has(old)) {
    // Streaming here: this tab saves it when the reply ends, unless it was deleted.
    if (!c) { old.deleted = true; stop(old); } else return;
  }
  state.chats = state.chats.filter((x) => x !== old);
  if (c) state.chats.push(c);
  state.chats.sort(byUpdated);
  if (old && state.chat === old) {
    if (c) { state.chat = c; renderChat(); if (!ui.settings.hidden) fillSettings(); } else openChat(state.chats.find(worthKeeping) || newChat());
  }
  renderList();
}

const newId = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 8);

function newChat() {
  const c = { id: newId(), title: 'New chat', model: ui.model.value || lsGet(KEY_MODEL, ''), created: Date.now(), updated: Date.now(), settings: {}, messages: [] };
  state.chats.unshift(c);
  return c;
}

function touch(chat) {
  chat.updated = Date.now();
  state.chats.sort(byUpdated);
}

// ---- API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, body, signal) {
  const headers = {};
  const key = lsGet(KEY_APIKEY, '');
  if (key) headers.Authorization = 'Bearer ' + key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method: body === undefined ? 'GET' : 'POST', headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network');
  }
  if (!res.ok) {
    let msg = res.statusText || 'request failed';
    try {
      const j = await res.json();
      if (j && typeof j.error === 'string') msg = j.error;
      else if (j && j.error && typeof j.error.message === 'string') msg = j.error.message;
    } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  return res;
}

// A reply whose stream ended before its final {"done": true} line.
const CUT_OFF = { kind: 'cutoff', title: 'Connection lost', detail: 'the reply is incomplete. Retry to generate it again.' };

// Turns an error into {title, detail, kind} for display.
function describe(e, model) {
  const msg = String(e && e.message || e);
  if (e instanceof ApiError) {
    if (e.status === 0) return { kind: 'down', title: 'Cannot reach the hearth server', detail: 'Is `hearth serve` still running? Check it, then retry.' };
    if (e.status === 401 || e.status === 403) return { kind: 'auth', title: lsGet(KEY_APIKEY, '') ? 'The API key was rejected' : 'This server needs an API key', detail: msg };
    // hearth: "the prompt is N tokens but the context is M tokens; ..."
    const n = /(\d+) tokens but the context is (\d+) tokens/i.exec(msg);
    if (n || /context (length|window|size)|too long|too many tokens|exceed/i.test(msg)) {
      return { kind: 'context', title: 'The conversation is too long for the context window', need: n ? +n[1] : 0, limit: n ? +n[2] : 0,
        detail: (n ? `it needs ${n[1]} tokens, the context holds ${n[2]}.` : msg + '.') + ' Leave out older messages, continue in a new chat, or raise “Context length” in settings.' };
    }
    if (e.status === 200) return { kind: 'stream', title: msg };   // an {"error"} line in the stream
    if (e.status === 404) return { kind: 'model', title: `Model “${model || '?'}” was not found`, detail: msg };
    if (/load/i.test(msg)) return { kind: 'model', title: `The model failed to load`, detail: msg };
    return { kind: 'http', title: `The server answered ${e.status}`, detail: msg };
  }
  return { kind: 'other', title: 'Something went wrong', detail: msg };
}

// ---- banner (server down, API key, storage) -------------------------------------------------

function hideBanner() { ui.banner.hidden = true; ui.banner.replaceChildren(); }

function showBanner(kind, title, detail, buttons = []) {
  const b = ui.banner;
  b.replaceChildren();
  b.className = 'banner' + (kind === 'warn' ? ' warn' : '');
  const text = document.createElement('span');
  text.className = 'grow';
  const strong = document.createElement('strong');
  strong.textContent = title;
  text.append(strong, detail ? ' — ' + detail : '');
  b.appendChild(text);
  for (const [label, fn, primary] of buttons) {
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'btn small' + (primary ? ' btn-primary' : '');
    btn.textContent = label;
    btn.addEventListener('click', fn);
    b.appendChild(btn);
  }
  if (kind === 'warn') {
    const x = document.createElement('button');
    x.type = 'button'; x.className = 'btn btn-ghost small'; x.textContent = 'Dismiss';
    x.addEventListener('click', hideBanner);
    b.appendChild(x);
  }
  b.hidden = false;
}

// Asks for the key after a 401/403 (title and detail by default: whether a key was stored and
// rejected), or from the sidebar's API key button.
function askApiKey(detail, then, title) {
  const had = !!lsGet(KEY_APIKEY, '');
  showBanner('error', title || (had ? 'API key rejected' : 'API key required'),
    detail || (had ? 'The server did not accept the key stored in this browser. Enter the right one.' : 'This server has API keys turned on. The key stays in this browser.'));
  const input = document.createElement('input');
  input.type = 'password'; input.id = 'apikey'; input.placeholder = 'API key'; input.autocomplete = 'off';
  input.setAttribute('aria-label', 'API key');
  input.value = lsGet(KEY_APIKEY, '');
  const save = document.createElement('button');
  save.type = 'button'; save.className = 'btn btn-primary small'; save.textContent = 'Save key';
  const done = () => { lsSet(KEY_APIKEY, input.value.trim()); hideBanner(); if (then) then(); };
  save.addEventListener('click', done);
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); done(); } });
  const cancel = document.createElement('button');
  cancel.type = 'button'; cancel.className = 'btn btn-ghost small'; cancel.textContent = 'Cancel';
  cancel.addEventListener('click', hideBanner);
  ui.banner.replaceChildren(ui.banner.firstChild, input, save, cancel);
  input.focus();
}

// ---- models -------------------------------------------------------------------------------

async function loadModels() {
  let tags;
  try {
    tags = await (await api('/api/tags')).json();
  } catch (e) {
    const d = describe(e);
    if (d.kind === 'auth') askApiKey(null, loadModels);
    else showBanner('error', d.title, d.kind === 'down' ? 'Start it with `hearth serve`, then retry.' : d.detail, [['Retry', loadModels, true]]);
    ui.model.replaceChildren(new Option('No models', ''));
    ui.model.disabled = true;
    return;
  }
  if (!ui.banner.classList.contains('warn')) hideBanner();
  state.models = Array.isArray(tags && tags.models) ? tags.models.filter((m) => m && typeof m.name === 'string') : [];
  await refreshLoaded();
  fillPicker();
}

async function refreshLoaded() {
  try {
    const ps = await (await api('/api/ps')).json();
    state.loaded = new Set((ps.models || []).map((m) => m.name || m.model));
  } catch (_) { /* keep the last known state */ }
}

function fillPicker() {
  const sel = ui.model;
  if (!state.models.length) {
    sel.replaceChildren(new Option('No models installed', ''));
    sel.disabled = true;
    showBanner('warn', 'No models yet', 'Add one with `hearth pull NAME` or `hearth create NAME -f Modelfile`, then reload.');
    updateInfo();
    return;
  }
  const names = state.models.map((m) => m.name);
  const want = [state.chat && state.chat.model, lsGet(KEY_MODEL, ''), names[0]].find((n) => n && names.includes(n));
  sel.replaceChildren(...state.models.map((m) => {
    const d = m.details || {};
    const bits = [d.parameter_size, d.quantization_level].filter(Boolean).join(' ');
    const o = new Option((state.loaded.has(m.name) ? '● ' : '') + m.name + (bits ? '  ·  ' + bits : ''), m.name);
    return o;
  }));
  sel.value = want;
  sel.disabled = false;
  selectModel(want);
}

function modelShow(name) {
  if (!name) return Promise.resolve(null);
  let v = state.show.get(name);
  if (!v) {
    v = api('/api/show', { model: name }).then((r) => r.json()).catch(() => null);
    state.show.set(name, v);
    v.then((j) => { if (j) state.show.set(name, j); else state.show.delete(name); });
  }
  return Promise.resolve(v);
}

async function selectModel(name) {
  if (!name) return;
  lsSet(KEY_MODEL, name);
  if (state.chat && state.chat.model !== name) {
    state.chat.model = name;
    if (worthKeeping(state.chat)) saveChat(state.chat);
  }
  updateInfo();
  await modelShow(name);
  if (ui.model.value === name) { updateInfo(); fillSettings(); }
}

// Context length from /api/show: model_info["<arch>.context_length"].
function contextLength(show) {
  const mi = show && show.model_info;
  if (!mi) return null;
  const arch = mi['general.architecture'];
  const v = arch ? mi[arch + '.context_length'] : null;
  return Number.isFinite(v) ? v : null;
}

const capabilities = (show) => (show && Array.isArray(show.capabilities) ? show.capabilities : []);

function chip(text, cls, title) {
  const s = document.createElement('span');
  s.className = 'chip' + (cls ? ' ' + cls : '');
  s.textContent = text;
  if (title) s.title = title;
  return s;
}

function updateInfo() {
  const name = ui.model.value;
  const m = state.models.find((x) => x.name === name);
  const show = state.show.get(name);
  const ready = show && !(show instanceof Promise);
  const chips = [];
  if (m) {
    const d = { ...(m.details || {}), ...(ready && show.details || {}) };
    const loaded = state.loaded.has(name);
    chips.push(chip(loaded ? 'loaded' : 'not loaded', loaded ? 'loaded' : 'idle', loaded ? 'In memory: replies start right away' : 'Loads on the first message'));
    if (d.family) chips.push(chip(d.family, '', 'Family'));
    if (d.parameter_size) chips.push(chip(d.parameter_size, '', 'Parameters'));
    if (d.quantization_level) chips.push(chip(d.quantization_level, '', 'Quantization'));
    const ctx = ready ? contextLength(show) : null;
    if (ctx) chips.push(chip(ctx.toLocaleString('en-US') + ' ctx', '', 'Context length the model was trained for'));
    if (ready && capabilities(show).includes('vision')) chips.push(chip('vision', '', 'Accepts images'));
  }
  ui.info.replaceChildren(...chips);
  const vision = ready && capabilities(show).includes('vision');
  ui.attach.hidden = !vision;
  if (!vision && state.pending.length) { state.pending = []; renderAttachments(); }
}

// ---- settings -----------------------------------------------------------------------------

function parseParameters(text) {
  const out = Object.create(null);
  for (const line of String(text || '').split('\n')) {
    const m = /^\s*(\w+)\s+(.+?)\s*$/.exec(line);
    if (m && !(m[1] in out)) out[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  return out;
}

function modelDefaults(name) {
  const show = state.show.get(name);
  const ready = show && !(show instanceof Promise);
  const p = ready ? parseParameters(show.parameters) : {};
  const ctx = ready ? contextLength(show) : null;
  return {
    system: ready && typeof show.system === 'string' && show.system ? show.system : 'Model default',
    temperature: p.temperature || '0.8',
    top_p: p.top_p || '0.9',
    top_k: p.top_k || '40',
    min_p: p.min_p || '0',
    num_predict: p.num_predict || 'unlimited',
    num_ctx: p.num_ctx || (ctx ? `auto ≤ ${ctx}` : 'auto'),
    seed: p.seed || 'random',
  };
}

function fillSettings() {
  const chat = state.chat;
  const s = (chat && chat.settings) || {};
  const defs = modelDefaults(ui.model.value);
  for (const el of ui.form.elements) {
    if (!el.name) continue;
    el.placeholder = defs[el.name];
    el.value = s[el.name] !== undefined ? s[el.name] : '';
  }
}

function onSettingInput(e) {
  const el = e.target;
  if (!el.name) return;
  if (!state.chat) openChat(newChat());
  const s = state.chat.settings || (state.chat.settings = {});
  if (el.value === '') delete s[el.name];
  else s[el.name] = el.name === 'system' ? el.value : Number(el.value);
  saveChat(state.chat);
  renderList();
}

function requestOptions(chat) {
  const s = chat.settings || {};
  const o = {};
  for (const k of SETTING_KEYS) {
    const v = s[k];
    if (typeof v === 'number' && Number.isFinite(v)) o[k] = INT_KEYS.has(k) ? Math.trunc(v) : v;
  }
  return o;
}

function toggleSettings(open) {
  const show = open === undefined ? ui.settings.hidden : open;
  const inside = ui.settings.contains(document.activeElement);
  ui.settings.hidden = !show;
  $('settings-btn').setAttribute('aria-expanded', String(show));
  if (show) fillSettings();
  syncScrim();
  // The focus goes into the panel (on narrow screens to its close button: a text field would
  // bring up the on-screen keyboard), and back to the settings button when it closes.
  if (show) (narrow() ? $('close-settings') : ui.form.elements[0]).focus();
  else if (inside) $('settings-btn').focus();
}

// ---- chat list ----------------------------------------------------------------------------

function groupLabel(t) {
  const day = 86400000;
  const start = new Date(); start.setHours(0, 0, 0, 0);
  if (t >= start.getTime()) return 'Today';
  if (t >= start.getTime() - day) return 'Yesterday';
  if (t >= start.getTime() - 7 * day) return 'Previous 7 days';
  return 'Older';
}

function renderList() {
  const frag = document.createDocumentFragment();
  let group = null;
  for (const c of state.chats.filter(worthKeeping)) {
    const g = groupLabel(c.updated || 0);
    if (g !== group) {
      group = g;
      const h = document.createElement('div');
      h.className = 'chat-group';
      h.textContent = g;
      frag.appendChild(h);
    }
    frag.appendChild(listItem(c));
  }
  ui.list.replaceChildren(frag);
}

// Small stroke icons built as DOM (no innerHTML): one path each, 24x24 view box.
const ICONS = {
  edit: 'M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4',
  trash: 'M5 7h14M10 7V5h4v2M7 7l1 12h8l1-12M10 11v5M14 11v5',
};
function icon(name) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24'); svg.setAttribute('width', '15'); svg.setAttribute('height', '15');
  svg.setAttribute('aria-hidden', 'true');
  const p = document.createElementNS(NS, 'path');
  p.setAttribute('d', ICONS[name]);
  p.setAttribute('fill', 'none'); p.setAttribute('stroke', 'currentColor');
  p.setAttribute('stroke-width', '1.8'); p.setAttribute('stroke-linecap', 'round'); p.setAttribute('stroke-linejoin', 'round');
  svg.appendChild(p);
  return svg;
}

function miniButton(ico, title, fn) {
  const b = document.createElement('button');
  b.type = 'button'; b.className = 'mini ' + ico; b.title = title;
  b.appendChild(icon(ico));
  b.setAttribute('aria-label', title);
  b.addEventListener('click', (e) => { e.stopPropagation(); fn(b); });
  return b;
}

function listItem(c) {
  const item = document.createElement('div');
  item.className = 'chat-item' + (state.chat === c ? ' active' : '') + (state.gens.has(c) ? ' streaming' : '');
  item.dataset.id = c.id;
  const open = document.createElement('button');
  open.type = 'button'; open.className = 'chat-open'; open.textContent = c.title || 'Untitled'; open.title = (c.title || '') + (state.gens.has(c) ? ' (replying)' : '');
  open.addEventListener('click', () => { openChat(c); closeSide(); });
  item.appendChild(open);
  item.appendChild(miniButton('edit', 'Rename', () => startRename(item, c)));
  item.appendChild(miniButton('trash', 'Delete', (b) => {
    if (!b.classList.contains('confirm')) {
      b.classList.add('confirm'); b.textContent = 'Delete?';
      setTimeout(() => { if (b.isConnected) { b.classList.remove('confirm'); b.replaceChildren(icon('trash')); } }, 3000);
      return;
    }
    deleteChat(c);
  }));
  return item;
}

function startRename(item, c) {
  const input = document.createElement('input');
  input.className = 'chat-rename'; input.value = c.title || ''; input.setAttribute('aria-label', 'Chat title');
  item.replaceChildren(input);
  input.focus(); input.select();
  let finished = false;
  const finish = (keep) => {
    if (finished) return;
    finished = true;
    const t = input.value.trim();
    if (keep && t) { c.title = t.slice(0, 120); c.renamed = true; saveChat(c); }
    renderList();
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); finish(true); }
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); finish(false); }
  });
  input.addEventListener('blur', () => finish(true));
}

function deleteChat(c) {
  c.deleted = true;
  stop(c);
  state.chats = state.chats.filter((x) => x !== c);
  saveChat(c);
  if (state.chat === c) openChat(state.chats.find(worthKeeping) || newChat());
  renderList();
}

// A reply streaming in the chat left behind goes on in the background.
function openChat(c) {
  state.chat = c;
  lsSet(KEY_CURRENT, worthKeeping(c) ? c.id : null);
  if (c.model && state.models.some((m) => m.name === c.model) && ui.model.value !== c.model) {
    ui.model.value = c.model;
    selectModel(c.model);
  } else if (!c.model && ui.model.value) c.model = ui.model.value;
  renderList();
  renderChat();
  syncBusy();
  if (!ui.settings.hidden) fillSettings();
}

// ---- messages -----------------------------------------------------------------------------

const nearBottom = () => ui.scroller.scrollHeight - ui.scroller.scrollTop - ui.scroller.clientHeight < 120;
const toBottom = () => { ui.scroller.scrollTop = ui.scroller.scrollHeight; };

function renderChat() {
  const c = state.chat;
  const frag = document.createDocumentFragment();
  if (c) {
    c.messages.forEach((m, i) => {
      frag.appendChild(messageNode(c, m, i));
      if (m.omitted && c.messages[i + 1] && !c.messages[i + 1].omitted) {
        const note = document.createElement('p');
        note.className = 'omit-note';
        note.textContent = 'The messages above are left out: they no longer fit the context window.';
        frag.appendChild(note);
      }
    });
  }
  ui.messages.replaceChildren(frag);
  ui.empty.hidden = !!(c && c.messages.length);
  toBottom();
}

function actionButton(label, fn, title) {
  const b = document.createElement('button');
  b.type = 'button'; b.textContent = label;
  if (title) b.title = title;
  b.addEventListener('click', fn);
  return b;
}

function messageNode(chat, m, idx) {
  const node = document.createElement('article');
  node.className = 'msg ' + (m.role === 'user' ? 'user' : 'assistant') + (m.omitted ? ' omitted' : '');
  if (m.omitted) node.title = 'Left out: no longer sent to the model';
  state.nodes.set(m, node);
  if (m.images && m.images.length) {
    const imgs = document.createElement('div');
    imgs.className = 'images';
    for (const src of m.images) {
      if (typeof src !== 'string' || !src.startsWith('data:image/')) continue;
      const img = document.createElement('img');
      img.src = src; img.alt = 'attached image';
      imgs.appendChild(img);
    }
    node.appendChild(imgs);
  }
  const body = document.createElement('div');
  body.className = 'body' + (m.role === 'user' ? '' : ' md');
  node.appendChild(body);
  fillBody(m, body);
  const foot = document.createElement('div');
  foot.className = 'msg-foot';
  node.appendChild(foot);
  fillFoot(chat, m, idx, foot);
  return node;
}

function fillBody(m, body) {
  if (m.role === 'user') { body.textContent = m.content; return; }
  // The reasoning shows open while it streams, closed once the answer starts or the reply ended.
  renderMarkdown(body, m.content, m.thinking ? { text: m.thinking, open: !!m.pending && !m.content } : null);
  body.classList.toggle('pending', !!m.pending);
  body.setAttribute('aria-busy', m.pending ? 'true' : 'false');
}

function fillFoot(chat, m, idx, foot) {
  foot.replaceChildren();
  if (m.role === 'user') {
    const a = document.createElement('div');
    a.className = 'actions';
    a.appendChild(actionButton('Edit', () => startEdit(chat, idx), 'Edit and resend'));
    foot.appendChild(a);
    return;
  }
  if (m.error) {
    const box = document.createElement('div');
    box.className = 'err';
    const strong = document.createElement('strong');
    strong.textContent = m.error.title;
    box.append(strong, m.error.detail ? ' — ' + m.error.detail : '');
    foot.appendChild(box);
  }
  if (m.pending) return;
  const stats = statsNode(m);
  if (stats) foot.appendChild(stats);
  const a = document.createElement('div');
  a.className = 'actions';
  if (m.content) a.appendChild(actionButton('Copy', (e) => copyText(m.content, e.target), 'Copy reply'));
  const last = idx === chat.messages.length - 1;
  if (last && m.error && m.error.kind === 'context') {
    if (m.error.need && chat.messages.some((x, i) => !x.omitted && i < idx - 1)) a.appendChild(actionButton('Leave out older messages', () => leaveOutOldest(chat, m.error), 'Send only the newest messages that fit'));
    a.appendChild(actionButton('Continue in a new chat', () => continueInNewChat(chat), 'A new chat with the same settings and your last message'));
  }
  if (last) a.appendChild(actionButton(m.error ? 'Retry' : 'Regenerate', () => regenerate(chat), 'Generate this reply again'));
  foot.appendChild(a);
}

function statsNode(m) {
  const s = m.stats;
  const parts = [];
  const add = (text, title, cls) => {
    const span = document.createElement('span');
    span.textContent = text;
    if (title) span.title = title;
    if (cls) span.className = cls;
    parts.push(span);
  };
  if (m.stopped) add('stopped', 'You stopped this reply', 'stopped');
  if (s) {
    if (Number.isFinite(s.ttft)) add(fmtSeconds(s.ttft / 1000) + ' to first token', s.load_ms > 50 ? `includes ${fmtSeconds(s.load_ms / 1000)} loading the model` : 'time from sending to the first token');
    if (Number.isFinite(s.tps)) add(s.tps.toFixed(1) + ' tok/s', 'generation speed');
    if (Number.isFinite(s.prompt)) add(s.prompt + ' in', 'prompt tokens');
    if (Number.isFinite(s.out)) add(s.out + ' out', 'generated tokens');
    if (Number.isFinite(s.cached)) {
      if (s.cached > 0) add(`${s.cached} cached`, 'prompt tokens served from the prefix cache', 'cache-hit');
      else add('no cache hit', 'the prompt was evaluated from scratch');
    }
    if (s.truncated > 0) add(`${s.truncated} oldest tokens cut`, 'the start of the conversation did not fit the context window', 'stopped');
    if (s.reason === 'length' && s.max > 0 && s.out >= s.max) add('max tokens reached', 'raise “Max tokens” in settings for longer replies');
    else if (s.reason === 'length') add('context window full', 'the conversation filled the context window: leave out older messages, start a new chat, or raise “Context length” in settings', 'stopped');
  }
  if (!parts.length) return null;
  const div = document.createElement('div');
  div.className = 'stats';
  div.append(...parts);
  return div;
}

const fmtSeconds = (s) => (s < 10 ? s.toFixed(2) : s.toFixed(1)) + ' s';

// Update of the streaming message: at most one Markdown render per frame, and when a long
// reply makes a render expensive, renders are spaced out so they take at most ~1/4 of the
// time (each render is O(reply length); without this, long replies would go quadratic).
let frameQueued = false;
let nextRenderAt = 0;
function scheduleRender() {
  if (frameQueued) return;
  frameQueued = true;
  const run = (now) => {
    if (now < nextRenderAt) { requestAnimationFrame(run); return; }
    frameQueued = false;
    const g = state.gens.get(state.chat);
    if (!g) return;
    const node = state.nodes.get(g.msg);
    if (!node) return;
    const stick = nearBottom();
    const t0 = performance.now();
    fillBody(g.msg, node.querySelector('.body'));
    const cost = performance.now() - t0;
    nextRenderAt = cost > 4 ? t0 + cost * 4 : 0;
    if (stick) toBottom();
  };
  requestAnimationFrame(run);
}

function refreshMessage(chat, m) {
  const node = state.nodes.get(m);
  if (!node || chat !== state.chat || !node.isConnected) return;
  const stick = nearBottom();
  const idx = chat.messages.indexOf(m);
  node.replaceWith(messageNode(chat, m, idx));
  if (stick) toBottom();
}

// ---- generation ---------------------------------------------------------------------------

// Send or Stop, for the open chat.
function syncBusy() {
  const busy = state.gens.has(state.chat);
  const focused = document.activeElement;
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  // The button that had the focus is hidden: keep the focus in the composer, not on <body>.
  if ((focused === ui.send || focused === ui.stop) && focused.hidden) ui.input.focus();
  ui.app.classList.toggle('busy', busy);
  updateSendState();
}

function updateSendState() {
  ui.send.disabled = !ui.input.value.trim() && !state.pending.length;
}

function wireMessages(chat) {
  const out = [];
  const sys = chat.settings && chat.settings.system;
  if (typeof sys === 'string' && sys.trim()) out.push({ role: 'system', content: sys });
  for (const m of chat.messages) {
    if (m.pending || m.omitted || (m.role === 'assistant' && !m.content)) continue;
    const w = { role: m.role, content: m.content };
    if (m.images && m.images.length) w.images = m.images.map((u) => String(u).replace(/^data:[^,]*,/, ''));
    out.push(w);
  }
  return out;
}

// extra.truncate: let the server cut the oldest tokens that still do not fit the context.
async function generate(chat, extra = {}) {
  const model = ui.model.value || chat.model;
  if (!model) { showBanner('error', 'No model selected', 'Pick a model first.'); return; }
  chat.model = model;
  const msg = { role: 'assistant', content: '', pending: true, model, created: Date.now() };
  const body = { model, messages: wireMessages(chat), stream: true };
  const options = requestOptions(chat);
  if (Object.keys(options).length) body.options = options;
  if (extra.truncate) body.truncate = true;
  // Tells "max tokens reached" from "context full" when the reply ends with done_reason "length".
  const maxTokens = Number(options.num_predict ?? modelDefaults(model).num_predict);
  chat.messages.push(msg);
  touch(chat);
  const controller = new AbortController();
  state.gens.set(chat, { controller, msg });
  syncBusy();
  if (chat === state.chat) {
    ui.empty.hidden = true;
    ui.messages.appendChild(messageNode(chat, msg, chat.messages.length - 1));
    toBottom();
  }
  saveChat(chat);
  renderList();
  const t0 = performance.now();
  let first = 0;
  let finished = false;   // the final {"done": true} line came
  const onLine = (obj) => {
    // (status 200: the error came inside the stream of a successful response)
    if (obj.error) throw new ApiError(200, typeof obj.error === 'string' ? obj.error : 'generation failed');
    const mm = obj.message || {};
    if (typeof mm.thinking === 'string' && mm.thinking) { msg.thinking = (msg.thinking || '') + mm.thinking; if (!first) first = performance.now(); }
    if (typeof mm.content === 'string' && mm.content) { msg.content += mm.content; if (!first) first = performance.now(); }
    if (obj.done) {
      finished = true;
      const sec = (ns) => (Number.isFinite(ns) ? ns / 1e9 : NaN);
      msg.stats = {
        ttft: first ? first - t0 : NaN,
        tps: obj.eval_count && sec(obj.eval_duration) > 0 ? obj.eval_count / sec(obj.eval_duration) : NaN,
        prompt: obj.prompt_eval_count, out: obj.eval_count,
        cached: obj.prompt_cached_tokens, load_ms: sec(obj.load_duration) * 1000,
        reason: obj.done_reason, max: maxTokens > 0 ? maxTokens : 0, truncated: obj.truncated_tokens,
      };
    }
    scheduleRender();
  };
  try {
    const res = await api('/api/chat', body, controller.signal);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let lost = false;   // the connection broke mid-reply
    for (;;) {
      const { value, done } = await reader.read().catch((e) => {
        if (e.name === 'AbortError') throw e;
        lost = true;
        return { done: true };
      });
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) onLine(JSON.parse(line));
      }
    }
    buf += dec.decode();
    if (!lost && buf.trim()) onLine(JSON.parse(buf));
    if (!finished) msg.error = { ...CUT_OFF };
  } catch (e) {
    if (e.name === 'AbortError') msg.stopped = true;
    else {
      msg.error = describe(e, model);
      if (msg.error.kind === 'auth') askApiKey(null, () => regenerate(chat));
    }
  } finally {
    msg.pending = false;
    if (!msg.stats && first) msg.stats = { ttft: first - t0 };
    state.gens.delete(chat);
    syncBusy();
    touch(chat);
    saveChat(chat);
    refreshMessage(chat, msg);
    renderList();
    refreshLoaded().then(() => { fillPickerLabels(); updateInfo(); });
  }
}

// Updates the loaded markers in the picker without rebuilding it.
function fillPickerLabels() {
  for (const o of ui.model.options) {
    const bare = o.text.replace(/^● /, '');
    o.text = (state.loaded.has(o.value) ? '● ' : '') + bare;
  }
}

function stop(chat = state.chat) {
  const g = state.gens.get(chat);
  if (g) g.controller.abort();
}

function send() {
  const text = ui.input.value.trim();
  if (state.gens.has(state.chat) || (!text && !state.pending.length)) return;
  if (!ui.model.value) { showBanner('error', 'No model selected', 'Pick a model first.'); return; }
  let chat = state.chat;
  if (!chat) { chat = newChat(); openChat(chat); }
  const m = { role: 'user', content: text, created: Date.now() };
  if (state.pending.length) m.images = state.pending.slice();
  if (!chat.messages.length && !chat.renamed) chat.title = titleFrom(text || 'Image');
  chat.messages.push(m);
  if (chat === state.chat) {
    ui.empty.hidden = true;
    ui.messages.appendChild(messageNode(chat, m, chat.messages.length - 1));
    // The previous last reply loses its Regenerate button.
    const prev = chat.messages[chat.messages.length - 2];
    if (prev) refreshMessage(chat, prev);
  }
  ui.input.value = '';
  state.pending = [];
  renderAttachments();
  autosize();
  generate(chat);
}

const titleFrom = (t) => { const s = t.replace(/\s+/g, ' ').trim(); return s.length > 48 ? s.slice(0, 47) + '…' : s; };

function regenerate(chat = state.chat) {
  if (!chat || state.gens.has(chat)) return;
  const last = chat.messages[chat.messages.length - 1];
  if (last && last.role === 'assistant') chat.messages.pop();
  if (!chat.messages.length) return;
  if (chat === state.chat) renderChat();
  generate(chat);
}

// After a context error: marks the oldest messages as left out (no longer sent) and sends
// the rest. The error said how many tokens the prompt was (need) and the context holds
// (limit); tokens per character are estimated from that and the newest messages that fit in
// 3/4 of the context are kept, leaving room for the reply. The kept part starts with a user
// message. "truncate" lets the server cut what still does not fit rather than fail again
// (on its own it would leave room for one generated token: docs/api.md).
function leaveOutOldest(chat, err) {
  if (state.gens.has(chat)) return;
  chat.messages.pop();   // the failed reply
  const live = chat.messages.filter((m) => !m.omitted);
  const perChar = err.need / Math.max(1, live.reduce((n, m) => n + m.content.length, 0));
  let tokens = err.need;
  for (let i = 0; i < live.length - 1 && (tokens > err.limit * 0.75 || live[i].role !== 'user'); i++) {
    live[i].omitted = true;
    tokens -= live[i].content.length * perChar;
  }
  if (chat === state.chat) renderChat();
  generate(chat, { truncate: true });
}

// After a context error: a new chat with the same settings, the last message in the composer.
function continueInNewChat(chat) {
  const last = chat.messages.filter((m) => m.role === 'user').pop();
  const c = state.chats.find((x) => !worthKeeping(x)) || newChat();
  c.settings = { ...chat.settings };
  openChat(c);
  if (last) {
    ui.input.value = last.content;
    state.pending = (last.images || []).slice();
    renderAttachments();
    autosize();
  }
  ui.input.focus();
}

function startEdit(chat, idx) {
  if (state.gens.has(chat)) return;
  const m = chat.messages[idx];
  const node = state.nodes.get(m);
  if (!node) return;
  const box = document.createElement('div');
  box.className = 'edit-box';
  const ta = document.createElement('textarea');
  ta.value = m.content; ta.setAttribute('aria-label', 'Edit message');
  const row = document.createElement('div');
  row.className = 'row';
  const cancel = document.createElement('button');
  cancel.type = 'button'; cancel.className = 'btn btn-ghost small'; cancel.textContent = 'Cancel';
  const save = document.createElement('button');
  save.type = 'button'; save.className = 'btn btn-primary small edit-send'; save.textContent = 'Send';
  row.append(cancel, save);
  box.append(ta, row);
  node.replaceChildren(box);
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
  const commit = () => {
    const t = ta.value.trim();
    if (!t || state.gens.has(chat)) return;
    m.content = t;
    delete m.omitted;
    chat.messages.splice(idx + 1);
    if (idx === 0 && !chat.renamed) chat.title = titleFrom(t);
    renderChat();
    renderList();
    generate(chat);
  };
  cancel.addEventListener('click', () => refreshMessage(chat, m));
  save.addEventListener('click', commit);
  ta.addEventListener('keydown', (e) => {
    if (sendsOnEnter(e)) { e.preventDefault(); commit(); }
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); refreshMessage(chat, m); }
  });
}

// ---- copy, export -------------------------------------------------------------------------

async function copyText(text, button) {
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch (_) {
    const ta = document.createElement('textarea');
    ta.value = text; ta.style.position = 'fixed'; ta.style.opacity = '0';
    document.body.appendChild(ta); ta.select();
    try { ok = document.execCommand('copy'); } catch (_e) { ok = false; }
    ta.remove();
  }
  if (button) {
    const old = button.textContent;
    button.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { button.textContent = old; }, 1200);
  }
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url; a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

const slug = (t) => (t || 'chat').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) || 'chat';

function exportChat(kind) {
  const c = state.chat;
  if (!c || !c.messages.length) { showBanner('warn', 'Nothing to export', 'This chat has no messages yet.'); return; }
  if (kind === 'json') {
    const data = { title: c.title, model: c.model, created: new Date(c.created).toISOString(), settings: c.settings,
      messages: c.messages.map(({ role, content, images, stats, stopped }) => ({ role, content, images, stats, stopped })) };
    download(slug(c.title) + '.json', 'application/json', JSON.stringify(data, null, 2));
    return;
  }
  const lines = [`# ${c.title}`, '', `Model: ${c.model || '?'} · ${new Date(c.created).toLocaleString()}`, ''];
  if (c.settings && c.settings.system) lines.push('## System', '', c.settings.system, '');
  for (const m of c.messages) lines.push(m.role === 'user' ? '## User' : '## Assistant', '', m.content, '');
  download(slug(c.title) + '.md', 'text/markdown', lines.join('\n'));
}

// ---- images (vision models) ---------------------------------------------------------------

// Downscales to at most 1024 px so conversations stay small enough for localStorage.
async function toDataUrl(file) {
  const bmp = await createImageBitmap(file);
  const scale = Math.min(1, 1024 / Math.max(bmp.width, bmp.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(bmp.width * scale));
  canvas.height = Math.max(1, Math.round(bmp.height * scale));
  canvas.getContext('2d').drawImage(bmp, 0, 0, canvas.width, canvas.height);
  bmp.close();
  return canvas.toDataURL('image/jpeg', 0.88);
}

async function addImages(files) {
  for (const f of files) {
    if (!f.type.startsWith('image/') || state.pending.length >= 4) continue;
    try { state.pending.push(await toDataUrl(f)); } catch (_) {
      showBanner('warn', 'Could not read the image', f.name);
    }
  }
  renderAttachments();
}

function renderAttachments() {
  ui.attachments.replaceChildren(...state.pending.map((src, i) => {
    const t = document.createElement('div');
    t.className = 'thumb';
    const img = document.createElement('img');
    img.src = src; img.alt = 'attachment ' + (i + 1);
    const x = document.createElement('button');
    x.type = 'button'; x.textContent = '✕'; x.title = 'Remove'; x.setAttribute('aria-label', 'Remove image');
    x.addEventListener('click', () => { state.pending.splice(i, 1); renderAttachments(); });
    t.append(img, x);
    return t;
  }));
  ui.attachments.hidden = !state.pending.length;
  updateSendState();
}

// ---- theme, layout ------------------------------------------------------------------------

// Stored as a raw string (not JSON) because theme.js reads it before the first paint.
function themePref() {
  try { return localStorage.getItem(KEY_THEME) || 'system'; } catch (_) { return 'system'; }
}

function applyTheme(t) {
  if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
  ui.theme.textContent = 'Theme: ' + (t === 'light' || t === 'dark' ? t : 'system');
}

function cycleTheme() {
  const order = ['system', 'light', 'dark'];
  const next = order[(order.indexOf(themePref()) + 1) % order.length];
  try { localStorage.setItem(KEY_THEME, next); } catch (_) { /* storage off: this page only */ }
  applyTheme(next);
}

const narrow = () => window.matchMedia('(max-width: 860px)').matches;
function syncScrim() {
  ui.scrim.hidden = !(narrow() && (ui.app.classList.contains('side-open') || !ui.settings.hidden));
}
function openSide() { ui.app.classList.add('side-open'); syncScrim(); }
function closeSide() { ui.app.classList.remove('side-open'); syncScrim(); }

function autosize() {
  ui.input.style.height = 'auto';
  ui.input.style.height = Math.min(ui.input.scrollHeight, 220) + 'px';
  updateSendState();
}

// ---- wiring -------------------------------------------------------------------------------

// Enter sends, but not the Enter that commits an input method's composition (Japanese,
// Chinese, ...): e.isComposing, keyCode 229 (Safari sends that Enter after compositionend,
// with isComposing false), and a compositionstart..compositionend flag for the rest.
let composing = false;
const sendsOnEnter = (e) => e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229 && !composing;

function wire() {
  ui.composer.addEventListener('submit', (e) => { e.preventDefault(); send(); });
  document.addEventListener('compositionstart', () => { composing = true; }, true);
  document.addEventListener('compositionend', () => { composing = false; }, true);
  ui.input.addEventListener('input', autosize);
  ui.input.addEventListener('keydown', (e) => {
    if (sendsOnEnter(e)) { e.preventDefault(); send(); }
  });
  ui.input.addEventListener('paste', (e) => {
    if (ui.attach.hidden) return;
    const files = Array.from(e.clipboardData ? e.clipboardData.files : []).filter((f) => f.type.startsWith('image/'));
    if (files.length) { e.preventDefault(); addImages(files); }
  });
  ui.stop.addEventListener('click', () => stop());
  ui.attach.addEventListener('click', () => ui.file.click());
  ui.file.addEventListener('change', () => { addImages(Array.from(ui.file.files)); ui.file.value = ''; });
  ui.model.addEventListener('change', () => selectModel(ui.model.value));
  ui.model.addEventListener('focus', () => refreshLoaded().then(fillPickerLabels));
  $('new-chat').addEventListener('click', () => {
    const blank = state.chats.find((c) => !worthKeeping(c));
    openChat(blank || newChat());
    closeSide();
    ui.input.focus();
  });
  $('open-side').addEventListener('click', openSide);
  $('close-side').addEventListener('click', closeSide);
  ui.scrim.addEventListener('click', () => { closeSide(); toggleSettings(false); });
  $('settings-btn').addEventListener('click', () => toggleSettings());
  $('close-settings').addEventListener('click', () => toggleSettings(false));
  ui.form.addEventListener('input', onSettingInput);
  ui.form.addEventListener('submit', (e) => e.preventDefault());
  $('reset-settings').addEventListener('click', () => {
    if (state.chat) { state.chat.settings = {}; saveChat(state.chat); }
    fillSettings();
  });
  $('export-json').addEventListener('click', () => exportChat('json'));
  $('export-md').addEventListener('click', () => exportChat('md'));
  ui.form.addEventListener('click', (e) => {
    const k = e.target.dataset && e.target.dataset.export;
    if (k) exportChat(k);
  });
  ui.theme.addEventListener('click', cycleTheme);
  $('key-btn').addEventListener('click', () => askApiKey('Stored only in this browser; sent as a Bearer token. Leave empty to remove.', loadModels, 'API key'));
  ui.messages.addEventListener('click', (e) => {
    const b = e.target.closest('.copy-code');
    if (b) copyText(b.closest('.code').querySelector('code').textContent, b);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    if (state.gens.has(state.chat)) { e.preventDefault(); stop(); return; }
    if (!ui.settings.hidden) toggleSettings(false);
    closeSide();
  });
  window.addEventListener('resize', syncScrim);
  window.addEventListener('storage', onStorage);
  // Models unload after their keep-alive: keep the loaded markers roughly current.
  const refresh = () => { if (!document.hidden && !state.gens.size && state.models.length) refreshLoaded().then(() => { fillPickerLabels(); updateInfo(); }); };
  document.addEventListener('visibilitychange', refresh);
  setInterval(refresh, 30000);
}

function init() {
  applyTheme(themePref());
  loadChats();
  wire();
  const cur = lsGet(KEY_CURRENT, null);
  openChat(state.chats.find((c) => c.id === cur) || newChat());
  loadModels();
  if (!narrow()) ui.input.focus();
}

init();
