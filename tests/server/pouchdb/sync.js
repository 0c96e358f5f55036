// PouchDB 9 against a Settee server: push, pull, live sync, and conflicts resolved on
// either side. Usage: node sync.js <server url> <scenario>. Prints one JSON object: what
// each side holds at the end, for tests/server/test_pouchdb.py to compare. PouchDB
// keeps its databases in memory (pouchdb-adapter-memory: no native module to build).
'use strict';

const PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-memory'))
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-replication'));

const [server, scenario] = process.argv.slice(2);
let counter = 0;
const local = () => new PouchDB(`local-${process.pid}-${counter++}`, {adapter: 'memory'});

async function http(method, path, body) {
  const response = await fetch(server + path, {
    method,
    headers: {'Content-Type': 'application/json', Accept: 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return {status: response.status, body: await response.json()};
}

// Every leaf of a document (open_revs=all), as [rev, deleted] pairs, sorted.
async function leavesOf(db, id) {
  const found = await db.get(id, {open_revs: 'all'});
  return found.filter(r => r.ok).map(r => [r.ok._rev, !!r.ok._deleted]).sort();
}

async function sideState(db, ids) {
  const state = {};
  for (const id of ids) {
    let winner = null;
    try {
      const doc = await db.get(id, {conflicts: true});
      winner = {rev: doc._rev, body: doc.value, conflicts: (doc._conflicts || []).sort()};
    } catch (e) {
      winner = {error: e.status};
    }
    state[id] = {winner, leaves: await leavesOf(db, id)};
  }
  return state;
}

async function until(check, what, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(resolve => setTimeout(resolve, 50));
  }
}

// Make one document conflicted: both sides edit revision 1 of it independently.
async function conflicted(db, remote, id) {
  const first = await db.put({_id: id, value: 'base'});
  await db.replicate.to(remote);
  await db.put({_id: id, _rev: first.rev, value: 'edited in pouchdb'});
  const put = await http('PUT', `/${remote.name.split('/').pop()}/${id}`,
    {_rev: first.rev, value: 'edited on the server, at length'});
  if (put.status !== 201) throw new Error(`server edit: ${JSON.stringify(put)}`);
  await db.sync(remote);
}

const scenarios = {
  async push_pull(name) {
    const remote = new PouchDB(`${server}/${name}`);
    const source = local();
    const docs = [];
    for (let i = 0; i < 300; i++) {
      const doc = {_id: `doc-${String(i).padStart(4, '0')}`, n: i, text: 'x'.repeat(i % 50)};
      if (i % 25 === 0) {
        doc._attachments = {'note.txt': {content_type: 'text/plain',
          data: Buffer.from(`attachment of ${i}`).toString('base64')}};
      }
      docs.push(doc);
    }
    await source.bulkDocs(docs);
    for (let i = 0; i < 300; i += 7) {           // some edited, some deleted
      const doc = await source.get(`doc-${String(i).padStart(4, '0')}`);
      if (i % 2) await source.remove(doc); else await source.put({...doc, edited: true});
    }
    const push = await source.replicate.to(remote);
    const pulled = local();
    const pull = await pulled.replicate.from(remote);
    const ids = docs.map(d => d._id);
    const attachment = await pulled.getAttachment('doc-0025', 'note.txt');
    return {push: {ok: push.ok, written: push.docs_written},
            pull: {ok: pull.ok, written: pull.docs_written},
            source: await sideState(source, ids), pulled: await sideState(pulled, ids),
            server: await sideState(remote, ids), attachment: attachment.toString()};
  },

  async live(name) {
    const remote = new PouchDB(`${server}/${name}`);
    const db = local();
    const sync = db.sync(remote, {live: true, retry: true});
    await db.put({_id: 'from-pouch', value: 1});
    await until(async () => (await http('GET', `/${name}/from-pouch`)).status === 200,
      'the server to receive a PouchDB write');
    const put = await http('PUT', `/${name}/from-server`, {value: 2});
    await until(async () => { try { await db.get('from-server'); return true; } catch (e) { return false; } },
      'PouchDB to receive a server write');
    const doc = await db.get('from-server');
    await db.put({...doc, value: 3});            // an edit goes back up
    await until(async () => (await http('GET', `/${name}/from-server`)).body.value === 3,
      'the server to receive a PouchDB edit');
    sync.cancel();
    return {server_put: put.status, ids: ['from-pouch', 'from-server'],
            pouch: await sideState(db, ['from-pouch', 'from-server']),
            server: await sideState(remote, ['from-pouch', 'from-server'])};
  },

  async resolved_on_server(name) {
    const remote = new PouchDB(`${server}/${name}`);
    const db = local();
    await conflicted(db, remote, 'c');
    const before = await sideState(db, ['c']);
    // the server resolves it: the losing leaf deleted, the winner edited
    const doc = (await http('GET', `/${name}/c?conflicts=true`)).body;
    for (const loser of doc._conflicts || []) {
      const del = await http('DELETE', `/${name}/c?rev=${loser}`);
      if (del.status !== 200) throw new Error(`delete ${loser}: ${JSON.stringify(del)}`);
    }
    await http('PUT', `/${name}/c`, {_rev: doc._rev, value: 'resolved on the server'});
    await db.sync(remote);
    await db.sync(remote);                         // and once more: nothing may come back
    return {before, pouch: await sideState(db, ['c']), server: await sideState(remote, ['c'])};
  },

  async resolved_in_pouch(name) {
    const remote = new PouchDB(`${server}/${name}`);
    const db = local();
    await conflicted(db, remote, 'c');
    const before = await sideState(db, ['c']);
    const doc = await db.get('c', {conflicts: true});
    for (const loser of doc._conflicts || []) await db.remove('c', loser);
    await db.put({...doc, _conflicts: undefined, value: 'resolved in pouchdb'});
    await db.sync(remote);
    await db.sync(remote);
    return {before, pouch: await sideState(db, ['c']), server: await sideState(remote, ['c'])};
  },
};

scenarios[scenario](`pouch-${scenario.replace(/_/g, '-')}-${process.pid}`)
  .then(result => { console.log(JSON.stringify(result)); })
  .catch(error => { console.log(JSON.stringify({error: String(error && error.stack || error)})); process.exitCode = 1; });
