/*
 * The header's server state: project name, problem banners, dispatcher switch.
 *
 * Owns: /agent/health (refreshed after each snapshot and when the window regains
 * focus while a problem is shown), the banners for a missing access token,
 * Claude Code that cannot run, and unreadable state files (#banners), and the
 * dispatcher's "Workers n/m" with its two-step Pause / Resume (#dispatcher),
 * redrawn with the board on every flush and when a dispatcher.status event lands.
 */
import { api, onUnauthorized } from "./api.js";
import { pages } from "./board-pages.js";
import { $, h, icon, patch } from "./dom.js";
import { onFlush, scheduleFlush } from "./render.js";
import { S, dirty, onEvent } from "./store.js";
import { toast } from "./toast.js";
import { renderNodes } from "./nodes.js";
import { renderTrust } from "./trust.js";

let healthProblems = [];
let authProblem = null;

export async function refreshHealth() {
  try {
    const health = await api("GET", "/agent/health");
    S.health = health;
    if (health.dispatcher) {
      S.dispatcher = health.dispatcher;
      for (const pid of health.dispatcher.active_orchestrations || []) {
        if (!S.orchestrating.has(pid)) {
          S.orchestrating.add(pid);
          dirty.plans.add(pid);
        }
      }
    }
    // an untrusted project has its own banner (trust.js), with the commands and a button
    healthProblems = (health.checks || []).filter((c) => c.level === "error" && c.name !== "trust");
    renderTrust(health, refreshHealth);
    const name = health.project || "";
    const proj = $("#project-name");
    proj.textContent = name;
    proj.title = health.project_dir || "";
    document.title = name ? `${name} · Shipyard` : "Shipyard";
    renderBanners();
    renderNodes(health);
    renderDispatcher();
    scheduleFlush();
  } catch (err) {
    // the board shows its own error; keep the last known health
  }
}

function showAuthProblem(detail) {
  if (authProblem === detail) return;
  authProblem = detail;
  renderBanners();
}

function renderBanners() {
  const box = $("#banners");
  const problems = S.health ? S.health.problems || [] : [];
  // agents run unsandboxed although the sandbox was wanted (auto without bubblewrap, or required)
  const sandbox = S.health && S.health.sandbox;
  const unsandboxed = sandbox && !sandbox.sandboxed && sandbox.setting !== "off" ? sandbox.warning : null;
  const sig = JSON.stringify([healthProblems, problems, authProblem, unsandboxed]);
  patch(box, sig, () => {
    const out = [];
    if (authProblem) {
      out.push(h("div", { class: "banner", role: "alert" }, icon("alert"),
        h("div", { class: "banner-body" }, h("strong", null, "This server needs an access token."),
          h("span", { class: "fix" }, authProblem))));
    }
    if (healthProblems.length) {
      out.push(h("div", { class: "banner", role: "alert", "data-banner": "claude" }, icon("alert"),
        h("div", { class: "banner-body" },
          h("strong", null, healthProblems.some((c) => c.blocks_start)
            ? "Claude Code cannot run agents on this server yet. Plans cannot start until this is fixed."
            : "Claude Code may not reach the model from this server: runs will fail until this is fixed."),
          h("ul", null, healthProblems.map((c) => h("li", null,
            h("span", { class: "detail" }, c.detail), " ",
            c.fix ? h("span", { class: "fix" }, "To fix: ", c.fix) : null))),
        ),
        h("button", { class: "btn small", type: "button", onclick: () => refreshHealth() }, icon("refresh"), "Check again")));
    }
    if (unsandboxed) {
      out.push(h("div", { class: "banner warn", role: "status", "data-banner": "sandbox" }, icon("alert"),
        h("div", { class: "banner-body" },
          h("strong", null, "Agents run with every permission of this account: they are not sandboxed."),
          h("span", { class: "detail" }, " ",
            unsandboxed.replace(/^runs are not sandboxed: /, "").replace(/ \([^)]*\)$/, ""), ". "),
          h("span", { class: "fix" }, "To fix: apt-get install bubblewrap socat, then restart Shipyard "
            + "(or set sandbox: off to run agents unsandboxed on purpose)."))));
    }
    if (problems.length) {
      out.push(h("div", { class: "banner warn", role: "status" }, icon("alert"),
        h("div", { class: "banner-body" },
          h("strong", null, `${problems.length} state file(s) could not be read and are ignored.`),
          h("ul", null, problems.slice(0, 5).map((p) => h("li", null, h("code", null, p.path), " — ", p.reason))))));
    }
    return out;
  });
}

let dispatcherConfirm = 0;
export function renderDispatcher() {
  const el = $("#dispatcher");
  const d = S.dispatcher;
  if (!d) return;
  if (el.hidden) el.hidden = false;
  let running = 0;
  if (pages.known) running = pages.total.in_progress || 0; // every running task, loaded or not
  else for (const t of S.tasks.values()) if (t.status === "in_progress") running++;
  const confirming = Date.now() < dispatcherConfirm;
  const sig = [d.running, d.max_parallel_workers, running, confirming].join("|");
  patch(el, sig, () => [
    h("span", { title: d.running ? "The dispatcher starts pending tasks as workers free up."
      : "The dispatcher is paused: pending tasks wait." },
    d.running ? `Workers ${running}/${d.max_parallel_workers}` : "Dispatcher paused"),
    h("button", {
      type: "button",
      "data-action": "dispatcher",
      title: d.running ? "Pause: stop starting tasks; running agents are stopped and their tasks return to pending."
        : "Resume starting pending tasks",
      onclick: toggleDispatcher,
    }, d.running ? (confirming ? "Confirm pause" : "Pause") : "Resume"),
  ]);
}
async function toggleDispatcher() {
  const d = S.dispatcher;
  if (!d) return;
  if (d.running && Date.now() >= dispatcherConfirm) {
    dispatcherConfirm = Date.now() + 4000;
    renderDispatcher();
    setTimeout(renderDispatcher, 4100);
    return;
  }
  dispatcherConfirm = 0;
  try {
    S.dispatcher = await api("POST", d.running ? "/agent/dispatcher/stop" : "/agent/dispatcher/start");
  } catch (err) {
    toast(err.message, "error");
  }
  renderDispatcher();
}

export function initHeader() {
  onUnauthorized(showAuthProblem);
  onFlush("board", renderDispatcher); // the running count follows the board's tasks
  onEvent((type) => { if (type === "dispatcher.status") renderDispatcher(); });
  window.addEventListener("focus", () => {
    if (healthProblems.length || $("#trust").childElementCount) refreshHealth();
  });
}
