/*
 * A task's changes as a diff: parsed into files, rendered with line colours.
 *
 * Owns: splitting `git diff` output per file with added/removed counts, capping
 * what is drawn at DIFF_MAX_LINES so a huge diff cannot freeze the page, and the
 * hint shown when there is nothing to show yet. Lines are escaped before markup.
 */
import { h } from "./dom.js";
import { shortSha } from "./format.js";
import { escapeHtml } from "./markdown.js";

const DIFF_MAX_LINES = 20000;

function parseDiff(text) {
  const files = [];
  let cur = null;
  for (const line of text.split("\n")) {
    if (line.startsWith("diff --git ")) { // the file's header shows the path instead
      const m = line.match(/^diff --git a\/(.*) b\/(.*)$/);
      cur = { path: m ? m[2] : line.slice(11), lines: [], adds: 0, dels: 0 };
      files.push(cur);
      continue;
    }
    if (!cur) {
      if (!line) continue;
      cur = { path: "changes", lines: [], adds: 0, dels: 0 };
      files.push(cur);
    }
    let cls = "ctx";
    if (line.startsWith("@@")) cls = "hunk";
    else if (line.startsWith("+++ ") || line.startsWith("--- ")) cls = "meta";
    else if (line.startsWith("+")) { cls = "add"; cur.adds++; }
    else if (line.startsWith("-")) { cls = "del"; cur.dels++; }
    else if (/^(index |new file|deleted file|similarity|rename |old mode|new mode|Binary files)/.test(line)) cls = "meta";
    cur.lines.push([cls, line]);
  }
  for (const f of files) {
    while (f.lines.length && f.lines[f.lines.length - 1][1] === "") f.lines.pop();
  }
  return files;
}
export function renderDiff(result, status) {
  const text = result.diff || "";
  if (!text.trim()) {
    const hint = status === "in_progress" ? "No commits yet: the changes show here when the agent commits or its run ends."
      : status === "pending" ? "No changes yet: the task has not started."
        : result.source || status === "completed" ? "The task made no changes." : "No changes.";
    return [h("div", { class: "empty-hint" }, hint)];
  }
  const files = parseDiff(text);
  let budget = DIFF_MAX_LINES;
  const out = [];
  out.push(h("div", { class: "diff-files" }, (result.files && result.files.length ? result.files : files.map((f) => f.path))
    .map((p) => h("span", { class: "chip mono" }, p))));
  for (const f of files) {
    const body = h("pre", { class: "diff-body" });
    const lines = budget > 0 ? f.lines.slice(0, budget) : [];
    budget -= lines.length;
    body.innerHTML = lines.map(([cls, l]) => `<span class="d-${cls}">${escapeHtml(l) || " "}</span>`).join("");
    if (lines.length < f.lines.length) {
      body.append(h("span", { class: "d-meta" }, `… ${f.lines.length - lines.length} more lines not shown`));
    }
    out.push(h("details", { class: "diff-file", open: true },
      h("summary", null, h("span", null, f.path), h("span", { class: "adds" }, `+${f.adds}`),
        h("span", { class: "dels" }, `−${f.dels}`)), body));
  }
  if (result.source) {
    const source = /^[0-9a-f]{40}$/.test(result.source) ? `the merge commit ${shortSha(result.source)}`
      : `the branch ${result.source}`;
    out.push(h("div", { class: "empty-hint" }, `Changes as recorded in ${source}.`));
  }
  return out;
}
