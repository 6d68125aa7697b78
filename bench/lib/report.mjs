/** The printed report: plain fixed-width tables, one per scenario, then the targets. */
import { MB } from './stats.mjs';

/** `align`: one letter per column, 'l' or 'r'; columns past its end are right-aligned. */
export function table(headers, rows, align = 'l') {
  const cells = [headers, ...rows].map((row) => row.map((cell) => (cell === null || cell === undefined ? '-' : String(cell))));
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => row[column].length)));
  const line = (row) =>
    row
      .map((cell, column) => (align[column] === 'l' ? cell.padEnd(widths[column]) : cell.padStart(widths[column])))
      .join('  ')
      .trimEnd();
  return [line(cells[0]), widths.map((width) => '-'.repeat(width)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

export const fixed = (value, digits = 1) => (typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : null);
export const mb = (bytes) => (typeof bytes === 'number' ? (bytes / MB).toFixed(0) : null);
export const ms = (seconds) => (typeof seconds === 'number' ? (seconds * 1000).toFixed(0) : null);
export const ratio = (value) => (typeof value === 'number' && Number.isFinite(value) ? `${value.toFixed(2)}x` : null);

/** "612 [580-640]" from a summary {median,min,max}. */
export function spread(summary, format = (value) => fixed(value, 0)) {
  if (!summary || summary.median === null) return null;
  return `${format(summary.median)} [${format(summary.min)}-${format(summary.max)}]`;
}

/** Error text for a report line or a table cell: whitespace (newlines too) collapsed, cut at `max` characters. */
export function oneLine(text, max = 300) {
  const flat = String(text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}
