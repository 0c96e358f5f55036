// PouchDB 9 (in node, its database in memory) pushes N small documents to a server:
// node bench/pouch_push.js <target database url> <N>. Prints {"seconds", "docs_written",
// "cpu"}: cpu is the seconds of processor time PouchDB itself used during the push,
// the part of the time no server can take away.
// Uses the PouchDB the suite installs (tests/server/pouchdb, `make pouchdb`).
'use strict';
const path = require('path');
const modules = path.join(__dirname, '..', 'tests', 'server', 'pouchdb', 'node_modules');
const load = name => require(path.join(modules, name));
const PouchDB = load('pouchdb-core').plugin(load('pouchdb-adapter-memory'))
  .plugin(load('pouchdb-adapter-http')).plugin(load('pouchdb-replication'));

async function main(target, count) {
  const source = new PouchDB(`push-${process.pid}`, {adapter: 'memory'});
  for (let start = 0; start < count; start += 5000) {
    const docs = [];
    for (let i = start; i < Math.min(count, start + 5000); i++) {
      docs.push({_id: `doc${String(i).padStart(6, '0')}`, i, name: `item number ${i}`});
    }
    await source.bulkDocs(docs);
  }
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  const result = await source.replicate.to(new PouchDB(target), {batch_size: 500});
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpuBefore);
  const cpu = (used.user + used.system) / 1e6;
  console.log(JSON.stringify({seconds, cpu, docs_written: result.docs_written, ok: result.ok}));
}

main(process.argv[2], Number(process.argv[3]))
  .catch(error => { console.log(JSON.stringify({error: String(error)})); process.exitCode = 1; });
