/**
 * The report's charts as SVG strings, drawn at build time with echarts' server-side renderer, so
 * report.html needs no script and no network to show them.
 */
import * as echarts from 'echarts';

export interface Chart { id: string; title: string; svg: string }

const WIDTH = 760;

/** Renders one echarts option to SVG; the chart is always disposed (a live one keeps the process up). */
export function renderSvg(option: echarts.EChartsCoreOption, width = WIDTH, height = 360): string {
  const chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width, height });
  try {
    chart.setOption({ animation: false, textStyle: { fontFamily: 'DejaVu Sans, sans-serif' }, ...option });
    return chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
}

const short = (id: string) => (id.length > 38 ? `${id.slice(0, 36)}…` : id);

export function horizontalBars(id: string, title: string, rows: { label: string; value: number }[], axisName: string): Chart {
  const r = [...rows].reverse();
  const svg = renderSvg({
    grid: { left: 260, right: 40, top: 30, bottom: 40 },
    xAxis: { type: 'value', name: axisName, nameLocation: 'middle', nameGap: 26 },
    yAxis: { type: 'category', data: r.map((x) => short(x.label)), axisLabel: { fontSize: 10 } },
    series: [{ type: 'bar', data: r.map((x) => x.value), itemStyle: { color: '#4a7bb7' } }],
  }, WIDTH, Math.max(240, 40 + r.length * 18));
  return { id, title, svg };
}

/** Lorenz curves of exposure per slot: the area between a curve and the diagonal is half the Gini. */
export function lorenz(id: string, title: string, series: { name: string; counts: number[]; catalogSize: number }[]): Chart {
  const points = (counts: number[], n: number): [number, number][] => {
    const sorted = [...counts].sort((a, b) => a - b);
    const total = sorted.reduce((s, c) => s + c, 0);
    const zeros = Math.max(0, n - sorted.length);
    const out: [number, number][] = [[0, 0], [zeros / n, 0]];
    let cum = 0;
    const step = Math.max(1, Math.floor(sorted.length / 200));
    for (let i = 0; i < sorted.length; i++) {
      cum += sorted[i];
      if (i % step === 0 || i === sorted.length - 1) out.push([(zeros + i + 1) / n, total ? cum / total : 0]);
    }
    return out;
  };
  const svg = renderSvg({
    legend: { top: 0 },
    grid: { left: 60, right: 30, top: 40, bottom: 50 },
    xAxis: { type: 'value', min: 0, max: 1, name: 'share of the catalogue (least shown first)', nameLocation: 'middle', nameGap: 28 },
    yAxis: { type: 'value', min: 0, max: 1, name: 'share of exposures' },
    series: [
      { name: 'equal exposure', type: 'line', data: [[0, 0], [1, 1]], showSymbol: false, lineStyle: { type: 'dashed', color: '#999' } },
      ...series.map((s) => ({ name: s.name, type: 'line', data: points(s.counts, Math.max(1, s.catalogSize)), showSymbol: false })),
    ],
  });
  return { id, title, svg };
}

export function groupedBars(id: string, title: string, categories: string[], series: { name: string; values: (number | null)[] }[], axisName: string): Chart {
  const svg = renderSvg({
    legend: { top: 0 },
    grid: { left: 60, right: 30, top: 40, bottom: 70 },
    xAxis: { type: 'category', data: categories.map(short), axisLabel: { interval: 0, rotate: categories.length > 5 ? 30 : 0, fontSize: 10 } },
    yAxis: { type: 'value', name: axisName },
    series: series.map((s) => ({ name: s.name, type: 'bar', data: s.values })),
  });
  return { id, title, svg };
}

export function lines(id: string, title: string, x: string[], series: { name: string; values: (number | null)[]; yAxisIndex?: number }[], axes: string[]): Chart {
  const svg = renderSvg({
    legend: { top: 0 },
    grid: { left: 60, right: 60, top: 40, bottom: 60 },
    xAxis: { type: 'category', data: x, axisLabel: { fontSize: 10 } },
    yAxis: axes.map((name) => ({ type: 'value', name })),
    series: series.map((s) => ({ name: s.name, type: 'line', data: s.values, yAxisIndex: s.yAxisIndex ?? 0, connectNulls: true })),
  });
  return { id, title, svg };
}
