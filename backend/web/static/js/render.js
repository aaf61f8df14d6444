/*
 * The render loop: one flush per animation frame, whoever asked for it.
 *
 * Why a module of its own, importing nothing of the app: every module that
 * changes state (the event stream, the board's pages, the panels' actions, the
 * header's health) needs to say "draw what changed", and the modules that draw
 * (the board, the open panel) need to be told. When that call lived in the
 * stream, the stream imported the views and the views imported the stream: a
 * circle of eight modules. Here the askers call scheduleFlush() and the drawers
 * register a step with onFlush(); neither knows the other.
 *
 * A flush runs the steps phase by phase, each phase in registration order:
 *   "apply"  queued changes go into the state (stream.js: the events of the frame)
 *   "board"  the board and the header redraw what the state marked dirty
 *   "panel"  the open panel view updates
 *   "after"  bookkeeping once the frame is drawn (the first-paint marks)
 * A burst of 200 events costs one flush. While the document is hidden, a flush
 * waits 200 ms instead of a frame (frames do not come while hidden).
 */

const PHASES = ["apply", "board", "panel", "after"];
const steps = Object.fromEntries(PHASES.map((phase) => [phase, []]));
let scheduled = false;
let paused = false;

/** Run `step` on every flush, in `phase` ("apply", "board", "panel" or "after"). */
export function onFlush(phase, step) {
  if (!steps[phase]) throw new Error(`unknown render phase: ${phase}`);
  steps[phase].push(step);
}

/** Ask for a flush on the next frame (many asks in one frame make one flush). */
export function scheduleFlush() {
  if (scheduled) return;
  scheduled = true;
  if (document.hidden) setTimeout(flush, 200);
  else requestAnimationFrame(flush);
}

/**
 * Hold every flush until resumeFlush(): while a snapshot loads, events wait in
 * their queue rather than being drawn over a half-loaded board.
 */
export function pauseFlush() {
  paused = true;
}

/** Stop holding and flush now (the snapshot is in). */
export function resumeFlush() {
  paused = false;
  flush();
}

function flush() {
  scheduled = false;
  if (paused) return; // resumeFlush() flushes once the hold ends
  for (const phase of PHASES) for (const step of steps[phase]) step();
}
