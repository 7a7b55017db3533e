const fs = require('fs');
const mod = new WebAssembly.Module(fs.readFileSync(process.env.SPLIT_WASM));
const imports = {};
for (const i of WebAssembly.Module.imports(mod)) { (imports[i.module] ||= {})[i.name] = () => 0; }
const inst = new WebAssembly.Instance(mod, imports);
const { buf, pieces, memory } = inst.exports;
const files = process.argv.slice(2);
console.log('MB/s in V8 (node ' + process.version + ')', 'o200k', 'cl100k');
for (const f of files) {
  const data = fs.readFileSync(f);
  const p = buf();
  new Uint8Array(memory.buffer, p, data.length).set(data);
  const res = [];
  for (const enc of [0, 1]) {
    // Warm up past V8's baseline tier (Liftoff) into the optimizing one.
    for (const end = Date.now() + 300; Date.now() < end; ) pieces(enc, data.length);
    const reps = Math.ceil((8 << 20) / data.length);
    const t0 = process.hrtime.bigint();
    let n = 0;
    for (let i = 0; i < reps; i++) n += pieces(enc, data.length);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    res.push((data.length * reps / dt / 1e6).toFixed(1));
  }
  console.log(f.padEnd(40), res.join('  '));
}
