// The widget's styles, scoped to its shadow root. `.lk` starts from `all: initial`, so nothing the
// shop's page sets (fonts, `* { all: unset }` resets, line heights) leaks in through inheritance;
// custom properties still do, which is how a shop themes it:
//   lookalike-search { --lookalike-accent: #7a1f3d; --lookalike-radius: 4px; }

export const CSS = `
.lk { all: initial; display: inline-block; vertical-align: middle;
  --a: var(--lookalike-accent, #1f3d36); --ai: var(--lookalike-accent-text, #ffffff);
  --t: var(--lookalike-text, #1c1b19); --m: var(--lookalike-muted, #5c5953);
  --s: var(--lookalike-surface, #ffffff); --b: var(--lookalike-border, #8a857c);
  --e: var(--lookalike-error, #a61b1b); --r: var(--lookalike-radius, 10px);
  font: 400 15px/1.45 var(--lookalike-font, system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif);
  color: var(--t); }
.lk *, .lk *::before, .lk *::after { box-sizing: border-box; }
.lk [hidden] { display: none !important; }
.lk button { font: inherit; color: inherit; cursor: pointer; border: 1px solid var(--b); background: var(--s);
  border-radius: var(--r); padding: 8px 14px; min-height: 40px; line-height: 1.2; margin: 0; }
.lk button:hover { border-color: var(--t); }
.lk :focus-visible { outline: 3px solid var(--a); outline-offset: 2px; }
.lk .primary { background: var(--a); border-color: var(--a); color: var(--ai); font-weight: 600; }
.lk svg { width: 20px; height: 20px; fill: none; stroke: currentColor; stroke-width: 1.8; stroke-linecap: round;
  stroke-linejoin: round; flex: none; }
.trigger { display: inline-flex; align-items: center; gap: 8px; }
.trigger.compact { padding: 8px; min-width: 40px; justify-content: center; }
.trigger.is-over { outline: 3px dashed var(--a); }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
dialog { font: inherit; color: var(--t); background: var(--s); border: 0; padding: 0;
  width: min(980px, calc(100vw - 32px)); max-width: none; max-height: calc(100dvh - 32px); border-radius: calc(var(--r) + 4px);
  box-shadow: 0 20px 60px rgb(0 0 0 / 35%); overflow: auto; }
dialog::backdrop { background: rgb(20 20 20 / 55%); }
.panel { padding: 20px 22px 24px; display: grid; gap: 16px; }
.head { display: flex; align-items: center; justify-content: space-between; gap: 12px; }
h2 { margin: 0; font-size: 1.2rem; font-weight: 650; }
.close { padding: 6px; min-width: 40px; }
.query { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; align-items: start; }
.drop { border: 2px dashed var(--b); border-radius: var(--r); padding: 22px 16px; text-align: center; display: grid;
  gap: 12px; justify-items: center; }
.drop.is-over, .panel.is-over .drop { border-color: var(--a); background: color-mix(in srgb, var(--a) 8%, var(--s)); }
.drop p { margin: 0; color: var(--m); }
.actions { display: flex; flex-wrap: wrap; gap: 8px; justify-content: center; }
.camera { display: none; }
@media (pointer: coarse) { .camera { display: inline-flex; } }
.preview { display: grid; gap: 8px; justify-items: start; }
.crop { border-radius: var(--r); overflow: hidden; --lk-crop-accent: var(--a); --lk-crop-max-height: 260px; }
.hint { margin: 0; color: var(--m); font-size: .9em; }
form { display: grid; gap: 6px; align-content: start; margin: 0; }
label { font-weight: 600; }
.row { display: flex; gap: 8px; }
input[type="search"] { font: inherit; color: var(--t); background: var(--s); border: 1px solid var(--b);
  border-radius: var(--r); padding: 8px 12px; min-height: 40px; flex: 1; min-width: 0; }
.status { margin: 0; color: var(--m); min-height: 1.45em; }
.status strong { color: var(--t); }
.error { color: var(--e); display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin: 0; }
.banner { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin: 0; }
ul { list-style: none; margin: 0; padding: 0; display: grid; gap: 14px;
  grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); }
li { display: grid; gap: 6px; align-content: start; }
.card { all: unset; display: grid; gap: 4px; cursor: pointer; color: var(--t); text-decoration: none; border-radius: var(--r); }
.card:focus-visible { outline: 3px solid var(--a); outline-offset: 2px; }
.card:hover .name { text-decoration: underline; }
.card.static { cursor: default; }
.card.static:hover .name { text-decoration: none; }
.media { aspect-ratio: 1; background: color-mix(in srgb, var(--b) 18%, var(--s)); border-radius: var(--r); overflow: hidden; }
.media img { width: 100%; height: 100%; object-fit: cover; display: block; }
.name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; display: -webkit-box; -webkit-line-clamp: 2;
  -webkit-box-orient: vertical; }
.price { color: var(--m); }
.like { font-size: .88em; padding: 6px 10px; min-height: 34px; justify-self: start; }
.more { justify-self: center; }
.results { display: grid; gap: 12px; }
.results:focus { outline: none; }
@media (max-width: 640px) {
  dialog { width: 100vw; max-height: 100dvh; height: 100dvh; border-radius: 0; margin: 0; }
  .query { grid-template-columns: 1fr; }
  ul { grid-template-columns: repeat(2, minmax(0, 1fr)); }
}
`;
