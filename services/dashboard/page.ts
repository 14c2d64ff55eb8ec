/**
 * The dashboard page: echarts' browser bundle (served from node_modules, so it works offline)
 * and a small script that fetches /dashboard/data and redraws every panel, every `refreshMs`.
 * Each panel records how many points it drew in `window.marqueePanels` (for the browser test).
 */
export function dashboardPage(refreshMs: number): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Marquee dashboard</title>
<style>
body { font-family: 'DejaVu Sans', sans-serif; margin: 1em 2em; color: #222; }
#panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 12px; }
.panel { border: 1px solid #ccc; border-radius: 4px; padding: 6px 10px; }
.panel h2 { font-size: 14px; margin: 2px 0; }
.chart { width: 100%; height: 220px; }
.note { color: #8a5a00; font-size: 12px; min-height: 1em; }
#banner.down { background: #fff0f0; border: 1px solid #d08080; padding: 4px 8px; }
#release table { border-collapse: collapse; font-size: 13px; } #release td { border: 1px solid #ddd; padding: 2px 6px; }
</style>
<script src="/dashboard/echarts.min.js"></script>
</head><body>
<h1>Marquee</h1>
<p id="banner">loading…</p>
<div class="panel" id="release"><h2>Release in flight</h2><div id="release-body">–</div></div>
<div id="panels"></div>
<script>
const charts = {};
window.marqueePanels = {};
function fmt(v) { return typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v); }
function panelEl(p) {
  let el = document.getElementById('panel-' + p.id);
  if (!el) {
    el = document.createElement('div');
    el.className = 'panel';
    el.id = 'panel-' + p.id;
    el.dataset.source = p.source;
    el.innerHTML = '<h2></h2><div class="chart"></div><p class="note"></p>';
    document.getElementById('panels').appendChild(el);
    charts[p.id] = echarts.init(el.querySelector('.chart'), null, { renderer: 'svg' });
  }
  return el;
}
async function refresh() {
  let d;
  try {
    const res = await fetch('/dashboard/data' + location.search);
    d = await res.json();
    if (!res.ok) throw new Error(d.error || res.status);
  } catch (err) {
    document.getElementById('banner').textContent = 'dashboard data not available: ' + err.message;
    return;
  }
  const b = document.getElementById('banner');
  b.className = d.prometheus.reachable ? '' : 'down';
  b.textContent = (d.prometheus.reachable ? 'Prometheus ' + d.prometheus.url : 'Prometheus not reachable at ' + d.prometheus.url + ': request and ingest panels from Prometheus are empty; the Postgres panels below still draw')
    + ' · updated ' + new Date(d.at).toLocaleTimeString() + ' · every ${Math.round(refreshMs / 1000)} s';
  for (const p of d.panels) {
    const el = panelEl(p);
    el.querySelector('h2').textContent = p.title + ' (' + p.unit + ')';
    el.querySelector('.note').textContent = p.note || '';
    charts[p.id].setOption({
      animation: false, legend: { top: 0 }, tooltip: { trigger: 'axis' },
      grid: { left: 50, right: 16, top: 28, bottom: 28 },
      xAxis: { type: 'time', axisLabel: { hideOverlap: true } }, yAxis: { type: 'value' },
      series: p.series.map((s) => ({ name: s.name, type: 'line', showSymbol: false, data: s.points })),
    }, true);
    window.marqueePanels[p.id] = { source: p.source, points: p.series.reduce((n, s) => n + s.points.filter((x) => x[1] !== null).length, 0), note: p.note };
  }
  const r = d.release;
  document.getElementById('release-body').innerHTML = r
    ? '<table>' + Object.entries(r).map(([k, v]) => '<tr><td>' + k + '</td><td>' + (v === null ? '–' : fmt(v)).replace(/</g, '&lt;') + '</td></tr>').join('') + '</table>'
    : 'no release recorded';
  window.marqueeRefreshed = (window.marqueeRefreshed || 0) + 1;
}
refresh();
setInterval(refresh, ${refreshMs});
</script>
</body></html>
`;
}
