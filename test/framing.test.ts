import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../src/errors.js';
import { encodeFrame, FRAME_HEADER_BYTES, FrameDecoder, FrameType, MAX_FRAME_PAYLOAD, type Frame } from '../src/framing.js';
import { randomChunks, seededRandom } from './helpers/random.js';

const hex = (bytes: Buffer) => bytes.toString('hex');

function sampleFrames(): Frame[] {
  return [
    { type: FrameType.Header, payload: Buffer.from('{"name":"06.jpg","size":3}') },
    { type: FrameType.KeepAlive, payload: Buffer.alloc(0) },
    { type: FrameType.Trailer, payload: Buffer.from([0, 1, 2, 0xff, 0x45]) },
  ];
}

function encodeAll(frames: Frame[]): Buffer {
  return Buffer.concat(frames.map((frame) => encodeFrame(frame.type, frame.payload)));
}

/** Feeds chunks one by one and collects every frame; a failure message names the split. */
function decodeChunks(chunks: Buffer[]): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  for (const chunk of chunks) frames.push(...decoder.push(chunk));
  expect(decoder.bufferedBytes, `leftover after chunks ${chunks.map(hex).join(' | ')}`).toBe(0);
  return frames;
}

function expectSameFrames(actual: Frame[], expected: Frame[], context: string): void {
  expect(actual.map((f) => [f.type, hex(f.payload)]), context).toEqual(expected.map((f) => [f.type, hex(f.payload)]));
}

describe('encodeFrame', () => {
  it('writes type, big-endian length, payload', () => {
    expect(hex(encodeFrame(FrameType.Accept, Buffer.from('ko')))).toBe('4b000000026b6f');
  });

  it('refuses a payload over the maximum', () => {
    expect(() => encodeFrame(FrameType.Header, Buffer.alloc(MAX_FRAME_PAYLOAD + 1))).toThrow(RangeError);
  });
});

describe('FrameDecoder', () => {
  const frames = sampleFrames();
  const wire = encodeAll(frames);

  it('decodes frames split at every single point', () => {
    for (let split = 0; split <= wire.length; split++) {
      const chunks = [wire.subarray(0, split), wire.subarray(split)];
      expectSameFrames(decodeChunks(chunks), frames, `input ${hex(wire)} split at ${split}`);
    }
  });

  it('decodes frames split at every pair of points', () => {
    for (let first = 0; first <= wire.length; first++) {
      for (let second = first; second <= wire.length; second++) {
        const chunks = [wire.subarray(0, first), wire.subarray(first, second), wire.subarray(second)];
        expectSameFrames(decodeChunks(chunks), frames, `input ${hex(wire)} split at ${first},${second}`);
      }
    }
  });

  it('decodes frames fed one byte at a time', () => {
    const chunks = [...wire].map((byte) => Buffer.from([byte]));
    expectSameFrames(decodeChunks(chunks), frames, 'one byte at a time');
  });

  it('decodes random chunkings from a fixed seed', () => {
    const random = seededRandom(20261130);
    for (let round = 0; round < 500; round++) {
      const chunks = randomChunks(wire, random, 1 + Math.floor(random() * 12));
      expectSameFrames(decodeChunks(chunks), frames, `round ${round}: ${chunks.map(hex).join(' | ')}`);
    }
  });

  it('decodes thousands of frames from one chunk', () => {
    const many: Frame[] = Array.from({ length: 5000 }, (_, i) => ({ type: FrameType.Ping, payload: Buffer.from(`ping ${i}`) }));
    expectSameFrames(decodeChunks([encodeAll(many)]), many, 'one chunk');
  });

  it('accepts zero-length and maximum-size payloads', () => {
    const edge: Frame[] = [
      { type: FrameType.KeepAlive, payload: Buffer.alloc(0) },
      { type: FrameType.Header, payload: Buffer.alloc(MAX_FRAME_PAYLOAD, 0x61) },
    ];
    expectSameFrames(decodeChunks(randomChunks(encodeAll(edge), seededRandom(7), 4096)), edge, 'edge sizes');
  });

  it('rejects maximum + 1 from the header alone, before any payload arrives', () => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header.writeUInt8(FrameType.Header, 0);
    header.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 1);
    const decoder = new FrameDecoder();
    expect(() => decoder.push(header)).toThrow(ProtocolError);
  });

  it('rejects a huge length prefix (4 GiB - 1) without buffering it', () => {
    const decoder = new FrameDecoder();
    expect(() => decoder.push(Buffer.from('48ffffffff', 'hex'))).toThrow(/declares 4294967295 bytes/);
  });

  // Regression (issue 10, critical): every chunk of an unfinished frame was kept as its own
  // Buffer, so a peer sending a frame one byte per TCP segment cost the receiver a few
  // hundred bytes of RSS per byte (126 such connections: 679 MB). The payload is now
  // copied into one buffer of its declared length as it arrives.
  it('a frame dribbled one byte per chunk costs its declared length, not a Buffer object per byte', () => {
    setFlagsFromString('--expose-gc');
    const collect = runInNewContext('gc') as () => void;
    const frame = encodeFrame(FrameType.Header, Buffer.alloc(60_000, 0x61));
    const decoder = new FrameDecoder();
    collect();
    const before = process.memoryUsage().heapUsed;
    for (let offset = 0; offset < frame.length - 1; offset++) {
      // Each chunk is its own ArrayBuffer, as a socket read is: no pool to share.
      const chunk = Buffer.from(new Uint8Array([frame[offset] as number]).buffer);
      if (decoder.push(chunk).length > 0) throw new Error(`a frame came out at byte ${offset}`);
    }
    collect();
    const held = process.memoryUsage().heapUsed - before;
    // 60,000 retained Buffers would be several MB of heap; one 60 KB payload is not on the heap at all.
    expect(held, `heap held by the decoder after 60,000 one-byte chunks: ${held} bytes`).toBeLessThan(1_000_000);
    const [complete] = decoder.push(frame.subarray(frame.length - 1));
    expect(complete?.payload.equals(Buffer.alloc(60_000, 0x61))).toBe(true);
  });

  it('a lowered maximum (what a receiver takes from a sender) applies from the next header on', () => {
    const decoder = new FrameDecoder();
    decoder.maxPayload = 8 * 1024;
    expect(decoder.push(encodeFrame(FrameType.Header, Buffer.alloc(8 * 1024)))).toHaveLength(1);
    expect(() => decoder.push(encodeFrame(FrameType.Header, Buffer.alloc(8 * 1024 + 1)).subarray(0, FRAME_HEADER_BYTES))).toThrow(
      new ProtocolError('frame Header declares 8193 bytes, more than the 8192 allowed'),
    );
  });

  it('rejects an unknown type at the first byte', () => {
    const decoder = new FrameDecoder();
    expect(() => decoder.push(Buffer.from('G'))).not.toThrow();
    expect(() => new FrameDecoder().push(Buffer.from('welcome to conair'))).toThrow(/unknown frame type/);
    expect(() => new FrameDecoder().push(Buffer.from([0x00]))).toThrow(ProtocolError);
  });

  it('yields nothing, and keeps the bytes, for input truncated at every offset', () => {
    for (let cut = 0; cut < wire.length; cut++) {
      const decoder = new FrameDecoder();
      const complete = decoder.push(wire.subarray(0, cut));
      const expectedCount = frames.filter((_, i) => encodeAll(frames.slice(0, i + 1)).length <= cut).length;
      expect(complete.length, `cut at ${cut} of ${hex(wire)}`).toBe(expectedCount);
      expect(decoder.bufferedBytes, `cut at ${cut}`).toBe(cut - encodeAll(frames.slice(0, expectedCount)).length);
    }
  });

  it('stops after one frame and hands back the raw bytes glued to it (sticky packet)', () => {
    const header = encodeFrame(FrameType.Header, Buffer.from('{}'));
    const data = Buffer.from('raw file bytes, not a frame');
    for (let split = 0; split <= header.length + data.length; split++) {
      const wireBytes = Buffer.concat([header, data]);
      const decoder = new FrameDecoder();
      decoder.append(wireBytes.subarray(0, split));
      let frame = decoder.shift();
      if (!frame) {
        decoder.append(wireBytes.subarray(split));
        frame = decoder.shift();
        expect(frame?.type, `split ${split}`).toBe(FrameType.Header);
        expect(hex(Buffer.concat(decoder.takeRemainder())), `split ${split}`).toBe(hex(data));
      } else {
        expect(frame.type).toBe(FrameType.Header);
        const rest = Buffer.concat([...decoder.takeRemainder(), wireBytes.subarray(split)]);
        expect(hex(rest), `split ${split}`).toBe(hex(data));
      }
      expect(decoder.bufferedBytes).toBe(0);
    }
  });

  it('peeks and puts bytes back without losing order', () => {
    const decoder = new FrameDecoder();
    decoder.append(Buffer.from('bc'));
    decoder.prepend(Buffer.from('a'));
    expect(decoder.peekByte()).toBe(0x61);
    expect(Buffer.concat(decoder.takeRemainder()).toString()).toBe('abc');
  });
});
