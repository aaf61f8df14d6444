/*
 * Routing and the side panel (#panel): which view is open, from the URL hash.
 *
 * Owns: the hash routes (#plan/<id>, #task/<id>, #new, #edit/<id>), the one
 * open view (`current`), opening and closing the panel, and where keyboard
 * focus goes when it closes. Views are registered by main.js with addRoute(), so
 * this module imports none of them and a new panel is one module plus one line.
 * A view is an object with root, update(force), dispose(), key (set here) and
 * optionally focusTarget, cardId (the card to mark selected), onLog,
 * onTaskChange, confirmLeave and isDirty.
 */
import { planCards, selectCard, selectedCard, taskCards } from "./board.js";
import { $ } from "./dom.js";

export const panelEl = $("#panel");
let current = null; // the open view
let returnFocus = null;
const routes = new Map(); // hash kind -> (id) => view or null

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
  const previous = selectedCard();
  selectCard(view && view.cardId ? view.cardId : null);
  if (!view) {
    if (!panelEl.hidden) {
      panelEl.hidden = true;
      panelEl.replaceChildren();
      // back to the card that was open, else to whatever had focus before the panel opened
      const card = previous && (taskCards.get(previous) || planCards.get(previous));
      const back = card && !card.hidden ? card : returnFocus && document.contains(returnFocus) ? returnFocus : null;
      (back || $("#board-start")).focus({ preventScroll: false });
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

export function initRouter() {
  window.addEventListener("hashchange", onRoute);
  window.addEventListener("popstate", onRoute);
  onRoute();
}
