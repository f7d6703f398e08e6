// The demo's sample images as data: the HTML each one is rendered from and the text lines a reader
// sees in it, top to bottom. make-samples.ts renders them; the OCR test checks the pipeline reads
// back exactly these lines, so the expected text has one source.

/** One sample image: its file name, how it is drawn, and the lines it shows. */
export interface SampleSpec {
  /** File name under demo/public/samples/. */
  readonly file: string;
  /** What the image shows, for the demo's picker. */
  readonly title: string;
  /** Width of the rendered element in CSS pixels (device scale 1, so also the PNG's). */
  readonly width: number;
  /** Height of the rendered element in CSS pixels, and of the PNG. */
  readonly height: number;
  /** Body of the page; the element with id "sample" is what gets captured. */
  readonly html: string;
  /**
   * The visual lines of text in reading order; where a line has a wide gap (a receipt's item and
   * price), its parts are separate entries of the inner array.
   */
  readonly lines: readonly (readonly string[])[];
}

interface ReceiptItem {
  readonly name: string;
  readonly price: string;
}

const RECEIPT_ITEMS: readonly ReceiptItem[] = [
  { name: 'Flat white', price: '3.20' },
  { name: 'Croissant', price: '2.40' },
  { name: 'Orange juice', price: '2.90' },
];
const RECEIPT_TOTAL = '8.50';

const escapeHtml = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const row = (left: string, right: string, style = ''): string =>
  `<div class="row" style="${style}"><span>${escapeHtml(left)}</span><span>${escapeHtml(right)}</span></div>`;

const PARAGRAPH_LINES = [
  'Tandem runs small models in the browser',
  'and heavy models on a server nearby.',
  'Detection happens on your device, while',
  'recognition runs remotely with progress.',
];

/** Every sample image, in the order the demo lists them. */
export const SAMPLES: readonly SampleSpec[] = [
  {
    file: 'receipt.png',
    title: 'A café receipt (monospace, two columns)',
    width: 360,
    height: 400,
    html: `
      <style>
        #sample { box-sizing: border-box; width: 360px; height: 400px; padding: 28px 32px;
          background: #fbf8f0; color: #222; font: 18px 'DejaVu Sans Mono'; }
        h1 { font-size: 24px; margin: 0 0 6px; text-align: center; }
        .addr { text-align: center; margin-bottom: 28px; }
        .row { display: flex; justify-content: space-between; margin: 12px 0; }
        .thanks { text-align: center; margin-top: 36px; }
      </style>
      <div id="sample">
        <h1>CORNER CAFE</h1>
        <div class="addr">12 Harbour Street</div>
        ${RECEIPT_ITEMS.map((item) => row(item.name, item.price)).join('\n')}
        ${row('TOTAL', RECEIPT_TOTAL, 'margin-top: 28px; font-weight: bold')}
        <div class="thanks">Thank you!</div>
      </div>`,
    lines: [
      ['CORNER CAFE'],
      ['12 Harbour Street'],
      ...RECEIPT_ITEMS.map((item) => [item.name, item.price]),
      ['TOTAL', RECEIPT_TOTAL],
      ['Thank you!'],
    ],
  },
  {
    file: 'sign.png',
    title: 'A station sign (white on green)',
    width: 520,
    height: 280,
    html: `
      <style>
        #sample { box-sizing: border-box; width: 520px; height: 280px; padding: 30px 40px;
          background: #0b6b3a; color: #fff; font-family: 'Liberation Sans'; font-weight: bold; }
        .big { font-size: 84px; line-height: 1; margin-bottom: 22px; }
        .mid { font-size: 36px; margin-bottom: 14px; }
        .small { font-size: 26px; font-weight: normal; }
      </style>
      <div id="sample">
        <div class="big">EXIT</div>
        <div class="mid">Platform 4</div>
        <div class="small">Open 06:00-23:30</div>
      </div>`,
    lines: [['EXIT'], ['Platform 4'], ['Open 06:00-23:30']],
  },
  {
    file: 'paragraph.png',
    title: 'A paragraph (serif body text)',
    width: 560,
    height: 200,
    html: `
      <style>
        #sample { box-sizing: border-box; width: 560px; height: 200px; padding: 30px 36px;
          background: #fff; color: #111; font: 22px/1.6 'Liberation Serif'; }
      </style>
      <div id="sample">${PARAGRAPH_LINES.map(escapeHtml).join('<br>')}</div>`,
    lines: PARAGRAPH_LINES.map((line) => [line]),
  },
];
