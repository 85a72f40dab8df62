// dockerode 5 with Node's default keep-alive agent: lifecycle, logs, exec and attach on a reused connection,
// docker.run, archive, events with until, volumes; over TCP and the unix socket. See ../README.md.
'use strict';
const Docker = require('dockerode');
const { PassThrough } = require('stream');

const IMAGE = process.env.FLOTILLA_IMAGE;

function check(ok, what) {
  if (!ok) throw new Error(`FAILED: ${what}`);
}

// Output of a multiplexed stream, split into stdout and stderr; resolves when the stream ends.
function demux(docker, stream) {
  const out = new PassThrough(), err = new PassThrough();
  const chunks = { out: [], err: [] };
  out.on('data', d => chunks.out.push(d));
  err.on('data', d => chunks.err.push(d));
  docker.modem.demuxStream(stream, out, err);
  return new Promise((resolve, reject) => {
    stream.on('end', () => resolve({ out: Buffer.concat(chunks.out).toString(), err: Buffer.concat(chunks.err).toString() }));
    stream.on('error', reject);
  });
}

// A one-file tar archive (ustar header of 512 bytes, the content padded to 512, two zero blocks).
function tarOf(name, content) {
  const header = Buffer.alloc(512);
  header.write(name, 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(content.length.toString(8).padStart(11, '0') + '\0', 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0' + '00', 257);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const body = Buffer.alloc(Math.ceil(content.length / 512) * 512);
  content.copy(body);
  return Buffer.concat([header, body, Buffer.alloc(1024)]);
}

// The content of a regular file in a tar archive (pax extended headers skipped).
function fileIn(tar, name) {
  for (let at = 0; at + 512 <= tar.length;) {
    const header = tar.subarray(at, at + 512);
    if (header.every(b => b === 0)) break;
    const entryName = header.subarray(0, 100).toString().replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString().replace(/\0.*$/s, '').trim() || '0', 8);
    const type = String.fromCharCode(header[156]);
    if ((type === '0' || type === '\0') && entryName.replace(/^\.?\//, '') === name)
      return tar.subarray(at + 512, at + 512 + size).toString();
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return null;
}

function readAll(stream) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', d => chunks.push(d));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

async function scenario(docker, label) {
  const since = Math.floor(Date.now() / 1000) - 1;
  const name = `node-${label}`;
  const c = await docker.createContainer({ Image: IMAGE, name, Cmd: ['sh', '-c', 'echo started; sleep 600'] });
  await c.start();
  check((await c.inspect()).State.Running, `${label}: running`);
  let logs = '';
  for (let i = 0; i < 50 && !logs.includes('started'); i++) {
    logs = (await c.logs({ stdout: true, stderr: true })).toString();
    await new Promise(r => setTimeout(r, 100));
  }
  check(logs.includes('started'), `${label}: logs ${JSON.stringify(logs)}`);

  // exec start on the agent's reused connection.
  const exec = await c.exec({ Cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'], AttachStdout: true, AttachStderr: true });
  const execOut = await demux(docker, await exec.start({ hijack: true, stdin: false }));
  check(execOut.out === 'out\n' && execOut.err === 'err\n', `${label}: exec output ${JSON.stringify(execOut)}`);
  check((await exec.inspect()).ExitCode === 3, `${label}: exec exit code`);

  // attach before start, then docker.run (attach, start, wait).
  const a = await docker.createContainer({ Image: IMAGE, Cmd: ['sh', '-c', 'sleep 1; echo attached-out'] });
  const attached = await a.attach({ stream: true, stdout: true, stderr: true });
  const attachOut = demux(docker, attached);
  await a.start();
  check((await attachOut).out === 'attached-out\n', `${label}: attach`);
  await a.wait();
  await a.remove();
  const sink = new PassThrough();
  const sunk = readAll(sink);
  const [result, ran] = await docker.run(IMAGE, ['echo', 'ran'], sink);
  sink.end();
  check(result.StatusCode === 0 && (await sunk).toString().includes('ran'), `${label}: docker.run`);
  await ran.remove();

  // Archive both ways.
  await c.putArchive(tarOf('copied.txt', Buffer.from('through the archive\n')), { path: '/tmp' });
  const tar = await readAll(await c.getArchive({ path: '/tmp/copied.txt' }));
  check(fileIn(tar, 'copied.txt') === 'through the archive\n', `${label}: archive`);

  // Volumes.
  const volume = await docker.createVolume({ Name: `nodevol-${label}` });
  const w = await docker.createContainer({ Image: IMAGE, Cmd: ['sh', '-c', 'echo kept > /data/f'], HostConfig: { Binds: [`nodevol-${label}:/data`] } });
  await w.start();
  check((await w.wait()).StatusCode === 0, `${label}: volume write`);
  await w.remove();
  const r = await docker.createContainer({ Image: IMAGE, Cmd: ['cat', '/data/f'], HostConfig: { Binds: [`nodevol-${label}:/data:ro`] } });
  await r.start();
  await r.wait();
  check((await r.logs({ stdout: true })).toString().includes('kept'), `${label}: volume read`);
  await r.remove();
  await docker.getVolume(volume.name || `nodevol-${label}`).remove();

  await c.remove({ force: true });

  // Events with until: the stream ends by itself.
  const until = Math.floor(Date.now() / 1000) + 1;
  await new Promise(res => setTimeout(res, (until * 1000 - Date.now()) + 200));
  const events = (await readAll(await docker.getEvents({ since, until }))).toString().trim().split('\n').map(l => JSON.parse(l));
  const actions = new Set(events.map(e => `${e.Actor && e.Actor.Attributes && e.Actor.Attributes.name}/${e.Action}`));
  check(actions.has(`${name}/start`) && actions.has(`${name}/destroy`), `${label}: events ${[...actions].join(' ')}`);
}

(async () => {
  const url = new URL(process.env.DOCKER_HOST.replace(/^tcp:/, 'http:'));
  await scenario(new Docker({ host: url.hostname, port: Number(url.port) }), 'tcp');
  await scenario(new Docker({ socketPath: process.env.FLOTILLA_SOCKET }), 'unix');
  console.log('ok');
})().catch(e => {
  console.error(e && e.stack || e);
  process.exit(1);
});
