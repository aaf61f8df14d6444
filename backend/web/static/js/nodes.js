/*
 * The Nodes strip: where agents run when the Ray executor is on (docs/ray.md).
 *
 * Owns: #nodes, rendered from /agent/health (header.js calls renderNodes after
 * each health refresh): one chip per machine with its shipyard slots in use,
 * the tasks running there (links to their panels) and whether it is alive; and
 * the banner saying why no task can start (dispatcher.executor_problem, e.g.
 * the Ray head is unreachable), so waiting tasks are never a mystery.
 * With the local executor it renders nothing.
 */
import { $, h, icon, patch } from "./dom.js";

export function renderNodes(health) {
  const box = $("#nodes");
  if (!box) return;
  const dispatcher = health.dispatcher || {};
  const ray = dispatcher.executor === "ray";
  const nodes = ray ? (health.nodes || []).filter((n) => n.slots > 0 || (n.running || []).length) : [];
  const problem = ray ? dispatcher.executor_problem : null;
  const sig = JSON.stringify([ray, nodes, problem]);
  patch(box, sig, () => {
    box.hidden = !ray;
    if (!ray) return [];
    const out = [];
    if (problem) {
      out.push(h("div", { class: "banner warn", role: "status", "data-banner": "executor" }, icon("alert"),
        h("div", { class: "banner-body" },
          h("strong", null, "Tasks are waiting: no agent can start on the cluster."),
          h("span", null, problem))));
    }
    out.push(h("div", { class: "nodes-strip", role: "list", "aria-label": "Ray nodes that run agents" },
      h("span", { class: "nodes-label" }, "Nodes"),
      nodes.length ? nodes.map(chip) : h("span", { class: "muted" }, "no node offers shipyard slots yet")));
    return out;
  });
}

function chip(node) {
  const running = node.running || [];
  const label = node.name + (node.address && !node.name.includes(node.address) ? ` (${node.address})` : "");
  const short = (node.node_id || "").slice(0, 8);
  return h("span", { class: `node-chip${node.alive ? "" : " dead"}`, role: "listitem",
    title: `${label}${node.node_id ? ` · Ray node ${node.node_id}` : ""}` },
    h("span", { class: "node-dot", "aria-hidden": "true" }),
    h("span", { class: "node-name" }, label),
    short ? h("span", { class: "node-id muted" }, short) : null,
    h("span", { class: "node-slots" }, node.alive ? `${running.length}/${node.slots} agents` : "down"),
    running.map((id) => h("a", { class: "node-task", href: `#task/${id}` }, id)));
}
