// Body of gr.HTML's js_on_load for a panel grid (see viewer/panels.py: panels_html). Gradio supplies `element`
// (the component), `trigger` (fires a Python event) and `watch` (runs after the HTML is re-rendered).
// One view (zoom s, centre cx/cy as fractions of the image) is shared by every panel, so zooming or dragging
// any panel moves all of them to the same region. The grid's HTML is replaced on every server update; the
// listeners sit on `element`, which stays, so they survive.
const view = { s: 1, cx: 0.5, cy: 0.5, mark: null, image: null };
const MAX_ZOOM = 64;

function clamp() {
  view.s = Math.min(MAX_ZOOM, Math.max(1, view.s));
  const half = 0.5 / view.s;
  view.cx = Math.min(1 - half, Math.max(half, view.cx));
  view.cy = Math.min(1 - half, Math.max(half, view.cy));
}

function apply() {
  clamp();
  // translate() percentages refer to the stack's own size, which is the panel's: one transform fits all panels.
  const transform = `translate(${(0.5 - view.cx * view.s) * 100}%, ${(0.5 - view.cy * view.s) * 100}%) scale(${view.s})`;
  element.querySelectorAll('.vw-stack').forEach((stack) => { stack.style.transform = transform; });
  element.querySelectorAll('.vw-mark').forEach((mark) => {
    if (!view.mark) { mark.style.display = 'none'; return; }
    mark.style.display = 'block';
    mark.style.left = `${(0.5 + (view.mark.u - view.cx) * view.s) * 100}%`;
    mark.style.top = `${(0.5 + (view.mark.v - view.cy) * view.s) * 100}%`;
  });
  const panels = element.querySelector('.vw-panels');
  if (panels) panels.dataset.zoom = view.s.toFixed(3);
}

// Pointer position as a fraction of the panel, and the image fraction under it.
function locate(ev, viewEl) {
  const r = viewEl.getBoundingClientRect();
  const px = (ev.clientX - r.left) / r.width, py = (ev.clientY - r.top) / r.height;
  return { px, py, u: (px - 0.5) / view.s + view.cx, v: (py - 0.5) / view.s + view.cy };
}

function zoomAt(factor, px, py) {
  const u = (px - 0.5) / view.s + view.cx, v = (py - 0.5) / view.s + view.cy;
  view.s = Math.min(MAX_ZOOM, Math.max(1, view.s * factor));
  view.cx = u - (px - 0.5) / view.s;
  view.cy = v - (py - 0.5) / view.s;
  apply();
}

function pixelOf(viewEl, u, v) {
  const width = +viewEl.dataset.width, height = +viewEl.dataset.height;
  return { x: Math.min(width - 1, Math.max(0, Math.floor(u * width))),
           y: Math.min(height - 1, Math.max(0, Math.floor(v * height))), width, height };
}

element.addEventListener('wheel', (ev) => {
  const viewEl = ev.target.closest('.vw-view');
  if (!viewEl) return;
  ev.preventDefault();
  const { px, py } = locate(ev, viewEl);
  zoomAt(Math.exp(-ev.deltaY * 0.0015), px, py);
}, { passive: false });

let drag = null;
element.addEventListener('pointerdown', (ev) => {
  const viewEl = ev.target.closest('.vw-view');
  if (!viewEl || ev.button !== 0 || !viewEl.querySelector('.vw-stack')) return;
  drag = { viewEl, x: ev.clientX, y: ev.clientY, cx: view.cx, cy: view.cy, moved: 0 };
  viewEl.setPointerCapture(ev.pointerId);
  ev.preventDefault();
});

element.addEventListener('pointermove', (ev) => {
  const viewEl = ev.target.closest('.vw-view');
  const readout = element.querySelector('.vw-pixel');
  if (viewEl && readout && viewEl.dataset.width) {
    const { u, v } = locate(ev, drag ? drag.viewEl : viewEl);
    const { x, y } = pixelOf(drag ? drag.viewEl : viewEl, u, v);
    readout.textContent = `x ${x}, y ${y}`;
  }
  if (!drag) return;
  const r = drag.viewEl.getBoundingClientRect();
  const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  drag.moved = Math.max(drag.moved, Math.abs(dx) + Math.abs(dy));
  view.cx = drag.cx - dx / r.width / view.s;
  view.cy = drag.cy - dy / r.height / view.s;
  apply();
});

element.addEventListener('pointerup', (ev) => {
  if (!drag) return;
  const { viewEl, moved } = drag;
  drag = null;
  if (moved > 3) return;  // a drag, not a click
  const { u, v } = locate(ev, viewEl);
  const { x, y, width, height } = pixelOf(viewEl, u, v);
  view.mark = { u: (x + 0.5) / width, v: (y + 0.5) / height };
  apply();
  trigger('click', { x, y });
});

element.addEventListener('dblclick', (ev) => {
  if (!ev.target.closest('.vw-view')) return;
  Object.assign(view, { s: 1, cx: 0.5, cy: 0.5 });
  apply();
});

element.addEventListener('click', (ev) => {
  const button = ev.target.closest('[data-action]');
  if (!button) return;
  const action = button.dataset.action;
  if (action === 'zoom-in') zoomAt(1.5, 0.5, 0.5);
  else if (action === 'zoom-out') zoomAt(1 / 1.5, 0.5, 0.5);
  else if (action === 'reset') { Object.assign(view, { s: 1, cx: 0.5, cy: 0.5 }); apply(); }
  else if (action === 'fullscreen') {
    const panels = element.querySelector('.vw-panels');
    if (document.fullscreenElement) document.exitFullscreen();
    else if (panels && panels.requestFullscreen) panels.requestFullscreen();
  }
});

// A new image starts unzoomed and unmarked; a re-render of the same image (models, error maps) keeps the view.
function onRender() {
  const panels = element.querySelector('.vw-panels');
  const image = panels ? panels.dataset.image : null;
  if (image !== view.image) Object.assign(view, { s: 1, cx: 0.5, cy: 0.5, mark: null, image });
  // A style chosen in the browser since the server drew this HTML wins over the one drawn in (app.js).
  const root = element.closest('[data-vw-mode], [data-vw-opacity], [data-vw-borders]');
  if (root && window.vwApplyStyle) window.vwApplyStyle(root);
  apply();
}
watch('value', onRender);
onRender();
