// theme.js — applies a theme the user picked before the first paint (no flash). Loaded as
// a tiny blocking script; app.js owns the toggle. "system" leaves it to the media query.
try {
  const t = localStorage.getItem('hearth.theme');
  if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
} catch (_) { /* storage disabled: follow the system */ }
