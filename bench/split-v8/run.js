const fs = require('fs');
const mod = new WebAssembly.Module(fs.readFileSync(process.env.SPLIT_WASM));
const imports = {};
for (const i of WebAssembly.Module.imports(mod)) { (imports[i.module] ||= {})[i.name] = () => 0; }
const inst = new WebAssembly.Instance(mod, imports);
const { buf, pieces, count, memory } = inst.exports;
// 64 MB written between two cold counts: more than the machine's caches hold.
const junk = new Uint32Array(16 << 20);
const flush = () => { for (let i = 0; i < junk.length; i += 16) junk[i] += 1; };
const mbps = (bytes, ns) => (bytes / ns * 1e3).toFixed(1);
console.log(`MB/s in V8 (node ${process.version}), o200k_base / cl100k_base:`,
            'split, count (warm: the same text again), count (cold: caches flushed first)');
for (const f of process.argv.slice(2)) {
  const data = fs.readFileSync(f);
  new Uint8Array(memory.buffer, buf(), data.length).set(data);
  const res = [];
  for (const [name, fn] of [['split', pieces], ['warm', count]]) {
    const r = [];
    for (const enc of [0, 1]) {
      // Warm up past V8's baseline tier (Liftoff) into the optimizing one.
      for (const end = Date.now() + 300; Date.now() < end; ) fn(enc, data.length);
      const reps = Math.ceil((8 << 20) / data.length);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) fn(enc, data.length);
      r.push(mbps(data.length * reps, Number(process.hrtime.bigint() - t0)));
    }
    res.push(`${name} ${r.join(' / ')}`);
  }
  const r = [];
  for (const enc of [0, 1]) {
    let ns = 0;
    for (let i = 0; i < 20; i++) {
      flush();
      const t0 = process.hrtime.bigint();
      count(enc, data.length);
      ns += Number(process.hrtime.bigint() - t0);
    }
    r.push(mbps(data.length * 20, ns));
  }
  res.push(`cold ${r.join(' / ')}`);
  console.log(f.padEnd(36), res.join('   '));
}
