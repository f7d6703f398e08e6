// Draws the recognised lines' boxes over the image as an SVG in the image's own pixel space, so
// the boxes stay on the text at any displayed size.

import type { OcrLine } from '../ocr/index.js';

const SVG = 'http://www.w3.org/2000/svg';

/** Replaces the overlay's boxes with one numbered outline per line. */
export function drawBoxes(
  svg: SVGSVGElement,
  size: { width: number; height: number },
  lines: readonly OcrLine[],
): void {
  svg.setAttribute('viewBox', `0 0 ${size.width} ${size.height}`);
  svg.replaceChildren();
  // Labels scale with the image so they read the same on a small sign and a large scan.
  const labelSize = Math.max(10, Math.round(Math.max(size.width, size.height) / 45));
  lines.forEach((line, index) => {
    const group = document.createElementNS(SVG, 'g');
    group.setAttribute('class', 'box');
    group.dataset.line = String(index + 1);
    const polygon = document.createElementNS(SVG, 'polygon');
    polygon.setAttribute('points', line.box.map((p) => `${p.x},${p.y}`).join(' '));
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `${index + 1}: ${line.text}`;
    polygon.append(title);
    const [corner] = line.box;
    const label = document.createElementNS(SVG, 'text');
    label.setAttribute('x', String(corner.x));
    label.setAttribute('y', String(Math.max(labelSize, corner.y - 3)));
    label.setAttribute('font-size', String(labelSize));
    label.textContent = String(index + 1);
    group.append(polygon, label);
    svg.append(group);
  });
}

/** Highlights one line's box (or none). */
export function highlightBox(svg: SVGSVGElement, line: number | undefined): void {
  for (const group of svg.querySelectorAll<SVGGElement>('g.box')) {
    group.classList.toggle('active', group.dataset.line === String(line));
  }
}
