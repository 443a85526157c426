// Page-level script (Blocks.launch(js=...)): arrow keys step through the images, and the URL follows the image.
() => {
  document.addEventListener('keydown', (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    const target = ev.target;
    // Arrow keys inside a text field, a slider or a list keep their usual meaning.
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    const id = { ArrowLeft: 'vw-prev', ArrowRight: 'vw-next' }[ev.key];
    const button = id && document.getElementById(id);
    if (!button || button.offsetParent === null) return;  // only while the Images tab is showing
    ev.preventDefault();
    button.click();
  });
  // Deep links: gradio_app.py wires the image name box to this on change.
  window.vwSetImageInUrl = (name) => {
    if (!name) return;
    const url = new URL(window.location.href);
    if (url.searchParams.get('image') === name) return;
    url.searchParams.set('image', name);
    window.history.replaceState(null, '', url);
  };
  // Mode, opacity and borders only restyle the panels: no round trip to the server. The choice is kept on the
  // panel component's root, which survives re-renders, and applied again by panels.js after each one.
  window.vwStyle = (selector, mode, opacity, borders) => {
    document.querySelectorAll(selector).forEach((root) => {
      if (mode !== null) root.dataset.vwMode = mode;
      if (opacity !== null) root.dataset.vwOpacity = String(opacity);
      if (borders !== null) root.dataset.vwBorders = borders ? '1' : '0';
      window.vwApplyStyle(root);
    });
  };
  window.vwApplyStyle = (root) => {
    const style = root.dataset;
    root.querySelectorAll('.vw-panels').forEach((panels) => {
      if (style.vwMode) panels.classList.toggle('vw-overlay', style.vwMode === 'overlay');
      if (style.vwOpacity) panels.style.setProperty('--vw-opacity', style.vwOpacity);
      if (style.vwBorders) panels.classList.toggle('vw-borders', style.vwBorders === '1');
    });
  };
}
