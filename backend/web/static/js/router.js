/*
 * Routing and the side panel (#panel): which view is open, from the URL hash.
 *
 * Owns: the hash routes (#plan/<id>, #task/<id>, #new, #edit/<id>), the one
 * open view (`current`), opening and closing the panel, and where keyboard
 * focus goes when it closes. Views are registered by main.js with addRoute(), so
 * this module imports none of them and a new panel is one module plus one line.
 * A view is an object with root, update(force), dispose(), key (set here) and
 * optionally focusTarget, cardId (the card to mark selected), onLog,
 * onTaskChange, onChat, confirmLeave and isDirty.
 *
 * The router imports no view and no board: it announces what happened with
 * onNavigate() events, and whoever cares listens (the board marks the selected
 * card and takes focus back when the panel closes):
 *   "navigate"  a route was applied; detail {view, cardId} (cardId: the card of
 *               the view now open, or null)
 *   "closed"    the panel closed; detail {cardId} of the view that was open. A
 *               listener that puts keyboard focus somewhere calls preventDefault();
 *               else focus goes back to where it was before the panel opened, or
 *               to the board's start.
 * The open view updates in the "panel" phase of every flush (render.js).
 */
import { $ } from "./dom.js";
import { onFlush } from "./render.js";

export const panelEl = $("#panel");
let current = null; // the open view
let returnFocus = null;
let currentCard = null; // the cardId of the open view
const routes = new Map(); // hash kind -> (id) => view or null
const navigation = new EventTarget();

/** Call `listener(event)` on router event `type` ("navigate" or "closed", see above). */
export function onNavigate(type, listener) {
  navigation.addEventListener(type, listener);
}
/** Tell the listeners; false when one of them called preventDefault(). */
function announce(type, detail) {
  return navigation.dispatchEvent(new CustomEvent(type, { detail, cancelable: true }));
}

/** Open `make(id)` for #<kind>/<id>; make returns null when the route does not apply (no id). */
export function addRoute(kind, make) {
  routes.set(kind, make);
}
/** The view open in the panel, or null. */
export function currentView() {
  return current;
}
/** Is `view` still the one shown? (an answer that arrives after the panel moved on is dropped) */
export function isOpen(view) {
  return current === view;
}

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [kind, id] = raw.split("/");
  return { kind: kind || "", id: id || "" };
}
export function navigate(hash, replace = false) {
  if (replace) {
    history.replaceState(null, "", hash);
    onRoute();
  } else if (location.hash === hash) {
    onRoute();
  } else {
    location.hash = hash;
  }
}
export function closePanel() {
  if (current && current.confirmLeave && !current.confirmLeave()) return;
  history.pushState(null, "", location.pathname + location.search);
  onRoute();
}

function onRoute() {
  const { kind, id } = parseHash();
  const key = `${kind}/${id}`;
  if (current && current.key === key) return;
  if (current) current.dispose();
  current = null;
  const make = routes.get(kind);
  const view = make ? make(id) : null;
  const previous = currentCard;
  currentCard = view && view.cardId ? view.cardId : null;
  announce("navigate", { view, cardId: currentCard });
  if (!view) {
    if (!panelEl.hidden) {
      panelEl.hidden = true;
      panelEl.replaceChildren();
      // back to the card that was open (the board takes it), else to whatever had focus before the panel opened
      if (announce("closed", { cardId: previous })) {
        const back = returnFocus && document.contains(returnFocus) ? returnFocus : null;
        (back || $("#board-start")).focus({ preventScroll: false });
      }
    }
    return;
  }
  if (panelEl.hidden && document.activeElement && document.activeElement !== document.body) {
    returnFocus = document.activeElement;
  }
  view.key = key;
  current = view;
  panelEl.replaceChildren(view.root);
  panelEl.hidden = false;
  view.update();
  (view.focusTarget || view.titleEl).focus({ preventScroll: true });
}

/** The "panel" phase of a flush: the open view redraws what changed. */
function updateOpenView() {
  if (current) current.update();
}

export function initRouter() {
  onFlush("panel", updateOpenView);
  window.addEventListener("hashchange", onRoute);
  window.addEventListener("popstate", onRoute);
  onRoute();
}
