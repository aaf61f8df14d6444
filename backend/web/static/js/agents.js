/*
 * Agents: which coding agent (Claude Code, Codex, Gemini CLI, opencode) runs a task or plans a plan.
 *
 * Owns: the list of agents (from /agent/health, with a built-in fallback), their display
 * names, the <select> used by the plan editor, the Start choice and the new-task form,
 * and the small agent label shown on cards and in panels. One module so every place
 * names an agent the same way.
 */
import { h } from "./dom.js";
import { S } from "./store.js";

const FALLBACK = [
  { name: "claude", label: "Claude Code" },
  { name: "codex", label: "Codex" },
  { name: "gemini", label: "Gemini CLI" },
  { name: "opencode", label: "opencode" },
];

/** [{name, label}] of every agent the server can run. */
export function agentList() {
  const fromServer = S.health && S.health.agents && S.health.agents.available;
  return fromServer && fromServer.length ? fromServer : FALLBACK;
}
/** The project's default worker agent (the `agent` setting). */
export function defaultAgent() {
  return (S.health && S.health.agents && S.health.agents.default) || "claude";
}
export function defaultOrchestrator() {
  return (S.health && S.health.agents && S.health.agents.orchestrator) || defaultAgent();
}
export function agentLabel(name) {
  const found = agentList().find((a) => a.name === name);
  return found ? found.label : name || "";
}
/**
 * A <select> of agents. The first option ("") means "the default", named after it, so
 * leaving it alone keeps following the project's setting.
 */
export function agentSelect({ id, name, value, fallback, label }) {
  const select = h("select", { id, name, class: "agent-select", "aria-label": label || null },
    h("option", { value: "" }, `Default (${agentLabel(fallback)})`),
    agentList().map((a) => h("option", { value: a.name }, a.label)));
  select.value = value || "";
  return select;
}
/** The agent (and model when known) as a small chip for cards and lists. */
export function agentChip(name, model) {
  if (!name) return null;
  const text = model ? `${agentLabel(name)} · ${model}` : agentLabel(name);
  // two parts so a narrow card cuts the model, never the agent's name
  return h("span", { class: "chip agent-chip", "data-agent": name, title: `Agent: ${text}` },
    h("span", { class: "agent-name" }, agentLabel(name)),
    model ? h("span", { class: "agent-model" }, ` · ${model}`) : null);
}
