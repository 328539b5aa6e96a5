// The settings page: every call goes to the config API with the token the
// user pasted (kept in sessionStorage only). Tenant-written text is always
// inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: null, project: null, catalog: null, editing: null, viewing: null, cursor: null, loads: 0, headersChanged: false, following: 0 };

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.message) || `HTTP ${response.status}`);
    error.field = data && data.error ? data.error.field : null;
    error.status = response.status;
    throw error;
  }
  return data;
}

function projectPath(rest = "") {
  return `/projects/${encodeURIComponent(state.project)}/webhooks${rest}`;
}

function show(section) {
  for (const id of ["sign-in", "webhooks", "editor", "deliveries"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "sign-in";
}

// ---- sign-in ----
async function signIn(token, project) {
  state.token = token;
  const me = await api("GET", "/me");
  if (me.role === "project") {
    state.project = me.project;
  } else if (project) {
    state.project = project;
  } else {
    const error = new Error("An admin token needs a project code.");
    error.field = "project";
    throw error;
  }
  sessionStorage.setItem("token", token);
  sessionStorage.setItem("project", state.project);
  $("who").textContent = `Project ${state.project} · ${me.role === "admin" ? "admin" : "project"} token`;
  await showList();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    await signIn($("token").value.trim(), $("project").value.trim());
    $("token").value = "";
  } catch (error) {
    state.token = null;
    $("sign-in-error").textContent = error.status === 401 ? "That token is not valid." : error.message;
  }
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.clear();
  state.token = state.project = null;
  $("who").textContent = "";
  $("list").replaceChildren();
  show("sign-in");
});

// ---- list ----
function when(timestamp) {
  return timestamp ? new Date(timestamp).toLocaleString() : "";
}

function statusOf(hook) {
  const badge = el("span", { class: `badge ${hook.status}`, text: hook.status });
  let detail = "";
  if (hook.status === "failing") {
    detail = `Failing since ${when(hook.failing_since)}: ${hook.last_failure_reason || "unknown"} (${hook.failure_count} failures)`;
  } else if (hook.status === "disabled" && hook.disabled_at) {
    detail = `Disabled ${when(hook.disabled_at)}${hook.disabled_reason ? `: ${hook.disabled_reason}` : ""}`;
  }
  return [badge, detail];
}

function card(hook) {
  const [badge, detail] = statusOf(hook);
  const toggle = el("input", { type: "checkbox", id: `enabled-${hook.id}`, role: "switch" });
  toggle.checked = hook.enabled;
  toggle.addEventListener("change", async () => {
    toggle.disabled = true;
    try {
      await api("PATCH", projectPath(`/${hook.id}`), { enabled: toggle.checked });
      await showList();
      if (toggle.checked && !hook.enabled) offerReplay(hook);
    } catch (error) {
      $("list-error").textContent = error.message;
      toggle.checked = !toggle.checked;
      toggle.disabled = false;
    }
  });
  const edit = el("button", { type: "button", class: "secondary", text: "Edit" });
  edit.addEventListener("click", () => openEditor(hook));
  const history = el("button", { type: "button", class: "secondary", text: "Deliveries" });
  history.addEventListener("click", () => openDeliveries(hook));
  const remove = el("button", { type: "button", class: "danger", text: "Delete" });
  remove.addEventListener("click", async () => {
    if (!window.confirm(`Delete the webhook "${hook.title}"?`)) return;
    try {
      await api("DELETE", projectPath(`/${hook.id}`));
      await showList();
    } catch (error) {
      $("list-error").textContent = error.message;
    }
  });
  const events = `${hook.events.length} event${hook.events.length === 1 ? "" : "s"}`;
  return el("li", { "data-id": hook.id }, [
    el("div", {}, [el("div", { class: "title", text: hook.title }), el("div", { class: "endpoint", text: `${hook.endpoint} · ${events}` })]),
    el("div", {}, [badge]),
    el("div", { class: "status-detail", text: detail }),
    el("div", { class: "actions" }, [
      el("label", { for: `enabled-${hook.id}` }, [toggle, "Enabled"]),
      edit,
      history,
      remove,
    ]),
  ]);
}

async function showList() {
  $("list-error").textContent = "";
  show("webhooks");
  let hooks = [];
  let cursor = null;
  try {
    do {
      const page = await api("GET", projectPath(`?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`));
      hooks = hooks.concat(page.webhooks);
      cursor = page.next_cursor;
    } while (cursor);
  } catch (error) {
    $("list-error").textContent = error.message;
  }
  $("list").replaceChildren(...hooks.map(card));
  $("empty").hidden = hooks.length > 0;
}

// ---- deliveries ----
function attemptDetail(attempt) {
  const lines = Object.entries(attempt.request_headers || {}).map(([name, value]) => `${name}: ${value}`);
  return el("div", { class: "detail" }, [
    el("div", { class: "muted", text: `Attempt ${attempt.attempt} · started ${when(attempt.started_at)} · ${attempt.latency_ms} ms` }),
    el("h3", { text: "Request headers" }),
    el("pre", { text: lines.join("\n") }),
    el("h3", { text: "Response" }),
    el("pre", { text: `${attempt.status ? `HTTP ${attempt.status}` : attempt.failure_reason || attempt.skipped_reason || ""}\n${attempt.response_body || ""}` }),
  ]);
}

function attemptRow(attempt) {
  const reason = attempt.outcome === "delivered" ? `HTTP ${attempt.status}` : attempt.failure_reason || attempt.skipped_reason || "";
  const trigger = attempt.trigger === "event" ? "" : ` · ${attempt.trigger}`;
  const details = el("details", {}, [
    el("summary", {}, [
      el("span", { class: `badge ${attempt.outcome}`, text: attempt.outcome }),
      el("span", { class: "title", text: ` ${attempt.event_name}` }),
      el("span", { class: "muted", text: ` · ${when(attempt.completed_at)} · ${reason}${trigger}${attempt.attempt > 1 ? ` · attempt ${attempt.attempt}` : ""}` }),
    ]),
  ]);
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.loaded) return;
    try {
      const one = await api("GET", projectPath(`/${state.viewing.id}/deliveries/${attempt.delivery_id}`));
      details.dataset.loaded = "yes";
      details.append(...one.attempts.map(attemptDetail));
    } catch (error) {
      details.append(el("p", { class: "error", text: error.message }));
    }
  });
  const redeliver = el("button", { type: "button", class: "secondary", text: "Redeliver" });
  redeliver.addEventListener("click", async () => {
    redeliver.disabled = true;
    try {
      const queued = await api("POST", projectPath(`/${state.viewing.id}/deliveries/${attempt.delivery_id}/redeliver`));
      $("deliveries-note").textContent = `Redelivery queued (${queued.delivery_id}); refresh in a moment to see it.`;
    } catch (error) {
      $("deliveries-error").textContent = error.message;
    }
    redeliver.disabled = false;
  });
  return el("li", { "data-delivery": attempt.delivery_id }, [details, el("div", { class: "actions" }, [redeliver])]);
}

async function loadDeliveries(append) {
  $("deliveries-error").textContent = "";
  const status = $("d-status").value;
  const query = new URLSearchParams({ limit: "20" });
  if (status) query.set("status", status);
  // A cursor continues only the listing (and filter) it came from.
  if (append && state.cursor && state.cursor.status === status) query.set("cursor", state.cursor.next);
  if (!append) {
    state.cursor = null;
    $("more").hidden = true;
  }
  const ticket = ++state.loads;
  try {
    const page = await api("GET", projectPath(`/${state.viewing.id}/deliveries?${query}`));
    if (ticket !== state.loads) return; // a later load replaced this one
    const rows = page.deliveries.map(attemptRow);
    if (append) $("attempts").append(...rows);
    else $("attempts").replaceChildren(...rows);
    state.cursor = page.next_cursor ? { status, next: page.next_cursor } : null;
    $("more").hidden = !page.next_cursor;
    $("no-deliveries").hidden = $("attempts").children.length > 0;
    $("no-deliveries").textContent = !status
      ? "No deliveries recorded yet."
      : page.next_cursor
        ? `No ${status} deliveries among the latest; “Older deliveries” looks further back.`
        : `No ${status} deliveries recorded.`;
  } catch (error) {
    $("deliveries-error").textContent = error.message;
  }
}

async function openDeliveries(hook) {
  state.viewing = hook;
  state.cursor = null;
  state.following += 1;
  $("recover-panel").open = false;
  $("recover-progress").textContent = "";
  $("r-since").value = localInput(new Date(Date.now() - 24 * 3600 * 1000));
  $("r-until").value = "";
  $("r-missed").checked = false;
  $("deliveries-title").textContent = `Deliveries of “${hook.title}”`;
  $("deliveries-endpoint").textContent = hook.endpoint;
  $("deliveries-note").textContent = "";
  $("d-status").value = "";
  $("attempts").replaceChildren();
  show("deliveries");
  await loadDeliveries(false);
}

$("back").addEventListener("click", () => showList());
$("d-status").addEventListener("change", () => loadDeliveries(false));
$("more").addEventListener("click", () => loadDeliveries(true));
$("ping").addEventListener("click", async () => {
  $("deliveries-error").textContent = "";
  try {
    const queued = await api("POST", projectPath(`/${state.viewing.id}/ping`));
    $("deliveries-note").textContent = `Ping queued (${queued.delivery_id}); refresh in a moment to see it.`;
  } catch (error) {
    $("deliveries-error").textContent = error.message;
  }
});

// ---- recovery ----
function progressText(recovery) {
  const found = recovery.state === "finding" ? `${recovery.deliveries} found so far` : `${recovery.deliveries} to send`;
  const parts = [`${recovery.sent} sent`, `${recovery.delivered} delivered`, `${recovery.failed} failed`];
  if (recovery.skipped) parts.push(`${recovery.skipped} skipped`);
  if (recovery.expired) parts.push(`${recovery.expired} no longer kept`);
  return `Recovery ${recovery.state}: ${found}; ${parts.join(", ")}.`;
}

// Shows a recovery's progress in `target` until it is finished or another
// one is followed.
async function followRecovery(hookId, recovery, target) {
  const ticket = ++state.following;
  target.textContent = progressText(recovery);
  while (recovery.state !== "finished") {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    if (ticket !== state.following) return;
    try {
      recovery = await api("GET", projectPath(`/${hookId}/recoveries/${recovery.recovery_id}`));
    } catch (error) {
      target.textContent = error.message;
      return;
    }
    if (ticket !== state.following) return;
    target.textContent = progressText(recovery);
  }
}

// A datetime-local value (the browser's time zone) as RFC 3339 UTC.
function isoOf(local) {
  return local ? new Date(local).toISOString() : undefined;
}

function localInput(date) {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 19);
}

$("recover-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  for (const id of ["since-error", "until-error", "rate_per_second-error", "recover-error"]) $(id).textContent = "";
  const since = isoOf($("r-since").value);
  if (!since) {
    $("since-error").textContent = "Choose when the window starts.";
    return;
  }
  const body = { since, include_missed: $("r-missed").checked, rate_per_second: Number($("r-rate").value) };
  if ($("r-until").value) body.until = isoOf($("r-until").value);
  try {
    const recovery = await api("POST", projectPath(`/${state.viewing.id}/recover`), body);
    followRecovery(state.viewing.id, recovery, $("recover-progress"));
  } catch (error) {
    const target = error.field && $(`${error.field}-error`);
    (target || $("recover-error")).textContent = error.message;
  }
});

// After a re-enable: the deliveries that failed before the webhook was
// disabled and the events published while it was, on request.
function offerReplay(hook) {
  const since = hook.failing_since || hook.disabled_at;
  if (!since) return;
  $("replay-text").textContent = `“${hook.title}” is enabled again. Send it what did not arrive since ${when(since)}, and the events it missed while it was disabled?`;
  $("replay-progress").textContent = "";
  $("replay-button").disabled = false;
  $("replay-button").onclick = async () => {
    $("replay-button").disabled = true;
    try {
      const recovery = await api("POST", projectPath(`/${hook.id}/recover`), { since, include_missed: true });
      followRecovery(hook.id, recovery, $("replay-progress"));
    } catch (error) {
      $("replay-progress").textContent = error.message;
      $("replay-button").disabled = false;
    }
  };
  $("replay").hidden = false;
}

// ---- editor ----
async function catalog() {
  if (!state.catalog) state.catalog = (await api("GET", "/event-types")).event_types;
  return state.catalog;
}

function eventBoxes(types, selected) {
  const groups = new Map();
  for (const type of types) {
    if (!groups.has(type.entity_label)) groups.set(type.entity_label, []);
    groups.get(type.entity_label).push(type);
  }
  const nodes = [];
  let n = 0;
  for (const [label, members] of groups) {
    n += 1;
    const all = el("input", { type: "checkbox", id: `all-${n}` });
    const boxes = members.map((type) => {
      const box = el("input", { type: "checkbox", name: "events", value: type.name, id: `ev-${type.name}` });
      box.checked = selected.has(type.name);
      box.addEventListener("change", () => {
        all.checked = boxes.every((b) => b.checked);
      });
      return el("label", { for: `ev-${type.name}` }, [box, type.label]);
    });
    all.checked = boxes.every((b) => b.firstChild.checked);
    all.addEventListener("change", () => {
      for (const b of boxes) b.firstChild.checked = all.checked;
    });
    nodes.push(
      el("div", { class: "group" }, [
        el("div", { class: "group-head" }, [el("label", { for: `all-${n}` }, [all, `${label} (all)`])]),
        el("div", { class: "events" }, boxes),
      ]),
    );
  }
  return nodes;
}

// ---- custom headers: names shown, values write-only ----
function headerRow(name = "") {
  const nameInput = el("input", { type: "text", "aria-label": "Header name", autocomplete: "off", spellcheck: "false" });
  nameInput.value = name;
  const valueInput = el("input", {
    type: "password",
    "aria-label": "Header value",
    autocomplete: "off",
    placeholder: name ? "value not shown: enter it to change headers" : "value",
  });
  const remove = el("button", { type: "button", class: "secondary", text: "Remove" });
  const row = el("li", {}, [nameInput, valueInput, remove]);
  remove.addEventListener("click", () => {
    row.remove();
    state.headersChanged = true;
  });
  for (const input of [nameInput, valueInput]) input.addEventListener("input", () => (state.headersChanged = true));
  return row;
}

$("add-header").addEventListener("click", () => {
  $("headers").append(headerRow());
  state.headersChanged = true;
  $("headers").lastElementChild.querySelector("input").focus();
});

// The headers to send: none when the editor was not touched (the stored set
// stays); else the whole set, every value entered again.
function headersBody() {
  if (!state.headersChanged) return undefined;
  const headers = {};
  for (const row of $("headers").children) {
    const [name, value] = [...row.querySelectorAll("input")].map((i) => i.value.trim());
    if (!name && !value) continue;
    if (!name || !value) {
      const error = new Error("Each header needs a name and its value (values are write-only: enter them again).");
      error.field = "headers";
      throw error;
    }
    headers[name] = value;
  }
  return headers;
}

function clearErrors() {
  for (const node of document.querySelectorAll("#webhook-form .error")) node.textContent = "";
}

async function openEditor(hook) {
  state.editing = hook;
  clearErrors();
  $("editor-title").textContent = hook ? `Edit “${hook.title}”` : "Create new webhook";
  $("f-title").value = hook ? hook.title : "";
  $("f-endpoint").value = hook ? hook.endpoint : "";
  $("f-secret").value = "";
  $("f-emails").value = hook ? hook.notify_emails.join("\n") : "";
  $("f-retry").value = hook ? hook.retry_policy : "none";
  $("secret-set").hidden = !hook || !hook.has_secret;
  $("secret-state").textContent = hook && hook.has_secret ? "A secret is set." : "";
  document.querySelector('input[name="secret-mode"][value="keep"]').checked = true;
  const names = hook ? Object.keys(hook.headers || {}) : [];
  $("headers").replaceChildren(...names.map((name) => headerRow(name)));
  $("headers-note").hidden = names.length === 0;
  state.headersChanged = false;
  $("signing").hidden = !hook;
  $("signing-secret").textContent = "••••••••";
  $("signing-note").textContent = "";
  show("editor");
  try {
    $("events").replaceChildren(...eventBoxes(await catalog(), new Set(hook ? hook.events : [])));
  } catch (error) {
    $("form-error").textContent = error.message;
  }
  $("f-title").focus();
}

$("new-webhook").addEventListener("click", () => openEditor(null));
$("cancel").addEventListener("click", () => showList());

function formBody() {
  const body = {
    title: $("f-title").value.trim(),
    endpoint: $("f-endpoint").value.trim(),
    events: [...document.querySelectorAll('input[name="events"]:checked')].map((b) => b.value),
    notify_emails: $("f-emails").value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean),
    retry_policy: $("f-retry").value,
  };
  const headers = headersBody();
  if (headers) body.headers = headers;
  const secret = $("f-secret").value;
  const mode = document.querySelector('input[name="secret-mode"]:checked').value;
  if (!state.editing || !state.editing.has_secret) {
    if (secret) body.secret = secret;
  } else if (mode === "replace") {
    body.secret = secret;
  } else if (mode === "remove") {
    body.secret = null;
  }
  return body;
}

$("webhook-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  try {
    if (state.editing) {
      await api("PATCH", projectPath(`/${state.editing.id}`), formBody());
    } else {
      await api("POST", projectPath(), formBody());
    }
    await showList();
  } catch (error) {
    const field = error.field && error.field.startsWith("headers") ? "headers" : error.field;
    const target = field && $(`${field}-error`);
    (target || $("form-error")).textContent = error.message;
  }
});

$("reveal").addEventListener("click", async () => {
  try {
    const shown = await api("GET", projectPath(`/${state.editing.id}/signing-secret`));
    $("signing-secret").textContent = shown.signing_secret;
    if (shown.previous_valid_until) {
      $("signing-note").textContent = `The previous secret signs too until ${when(shown.previous_valid_until)}.`;
    }
  } catch (error) {
    $("signing-note").textContent = error.message;
  }
});

$("rotate").addEventListener("click", async () => {
  if (!window.confirm("Rotate the signing secret? The old one keeps signing for 24 hours.")) return;
  try {
    const rotated = await api("POST", projectPath(`/${state.editing.id}/signing-secret/rotate`));
    $("signing-secret").textContent = rotated.signing_secret;
    $("signing-note").textContent = `The old secret signs too until ${when(rotated.previous_valid_until)}.`;
  } catch (error) {
    $("signing-note").textContent = error.message;
  }
});

// ---- start ----
(async () => {
  const token = sessionStorage.getItem("token");
  if (!token) return show("sign-in");
  try {
    await signIn(token, sessionStorage.getItem("project"));
  } catch {
    sessionStorage.clear();
    show("sign-in");
  }
})();
