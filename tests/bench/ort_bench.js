#!/usr/bin/env node
// The ONNX Runtime peer of the CPU benchmark (scripts/bench_cpu.sh): onnxruntime-node from npm
// (its bundled CPU library), models exported by tests/bench/torch_clip.py. Prints one JSON object
// like bench_cpu's: session creation and call times in ms, peak RSS.
//
//   node tests/bench/ort_bench.js --image DIR/image.onnx [--text DIR/text.onnx --tokens TOKDIR]
//        [--size 224] [--batches 1,16] [--reps 5] [--warmup 1] [--threads 2] [--check OUT.f32]
//
// ORT_NODE_PATH: where onnxruntime-node is installed (default: resolved from the working directory).
'use strict';
const fs = require('fs');
const path = require('path');

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const ortPath = process.env.ORT_NODE_PATH || 'onnxruntime-node';
const ort = require(ortPath);

async function main() {
  const imagePath = arg('image');
  const textPath = arg('text');
  const tokensDir = arg('tokens');
  const batches = (arg('batches', '1,16')).split(',').filter(Boolean).map(Number);
  const reps = Number(arg('reps', 5));
  const warmup = Number(arg('warmup', 1));
  const threads = Number(arg('threads', 2));
  const check = arg('check');
  const options = {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
  const out = {peer: 'ort', threads, ort: require(path.join(path.dirname(require.resolve(ortPath)), '..', 'package.json')).version};

  const t0 = performance.now();
  const image = await ort.InferenceSession.create(imagePath, options);
  const text = textPath ? await ort.InferenceSession.create(textPath, options) : null;
  out.load_ms = performance.now() - t0;
  out.rss_after_load_mib = process.resourceUsage().maxRSS / 1024;

  const size = Number(arg('size', 224));
  const timed = async (f) => {
    for (let i = 0; i < warmup; ++i) await f();
    const ms = [];
    for (let i = 0; i < reps; ++i) {
      const t = performance.now();
      await f();
      ms.push(performance.now() - t);
    }
    return ms;
  };
  // xorshift32 uniform in [-2, 2): the values do not matter for the timing, only that they are finite.
  let state = 7;
  const uniform = () => {
    state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0;
    return (state / 4294967296) * 4 - 2;
  };
  for (const b of batches) {
    const data = new Float32Array(b * 3 * size * size);
    for (let i = 0; i < data.length; ++i) data[i] = uniform();
    const feeds = {pixels: new ort.Tensor('float32', data, [b, 3, size, size])};
    out['image_b' + b + '_ms'] = await timed(() => image.run(feeds));
  }
  const loadTokens = (kind) => {
    const meta = JSON.parse(fs.readFileSync(path.join(tokensDir, 'tokens.json'), 'utf8'));
    const shape = meta[kind];
    const buf = fs.readFileSync(path.join(tokensDir, kind + '.i32'));
    const ids = new Int32Array(buf.buffer, buf.byteOffset, shape[0] * shape[1]);
    return new ort.Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), shape);
  };
  if (text && tokensDir) {
    for (const kind of ['short', 'long']) {
      const tokens = loadTokens(kind);
      out['text_' + kind + '_n'] = tokens.dims[0];
      out['text_' + kind + '_ms'] = await timed(() => text.run({tokens}));
    }
  }
  if (check) {
    // The cross-check input: pixels[i] = 2·sin(0.001·i) over a batch of 2, and the short prompts.
    const data = new Float32Array(2 * 3 * size * size);
    for (let i = 0; i < data.length; ++i) data[i] = 2 * Math.sin(0.001 * i);
    const parts = [(await image.run({pixels: new ort.Tensor('float32', data, [2, 3, size, size])})).embeds.data];
    if (text && tokensDir) parts.push((await text.run({tokens: loadTokens('short')})).embeds.data);
    const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { all.set(p, o); o += p.length; }
    fs.writeFileSync(check, Buffer.from(all.buffer));
  }
  out.peak_rss_mib = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error('ort_bench: ' + (e && e.stack || e));
  process.exit(1);
});
