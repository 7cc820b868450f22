/**
 * `toa inspect` logic: stream a capture through the wire readers into the connection tracker. The
 * file is read in chunks, so memory stays flat whatever the capture size.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { decodePacket, packets, readCaptureStream, WireError } from "../wire/index.js";
import type { InspectResult } from "./report.js";
import { ConnectionTracker, type TrackerOptions } from "./tracker.js";

/** Options of {@link inspectFile} and {@link inspectBuffer}. */
export type InspectOptions = TrackerOptions;

/** Build the report of a capture held in memory (tests, small files). */
export function inspectBuffer(buf: Buffer, opts: InspectOptions): InspectResult {
  const t = new ConnectionTracker(opts);
  for (const p of packets(buf)) t.add(p);
  return t.result();
}

/** The report, plus the read error that cut it short (a truncated capture still reports what came before). */
export interface FileInspection {
  result: InspectResult;
  error?: WireError;
  size: number;
}

/**
 * Inspect a capture file by streaming it. `onProgress(bytesRead, size)` is called per chunk. File
 * system errors (ENOENT...) are thrown; capture format errors are returned in `error`.
 */
export async function inspectFile(
  path: string,
  opts: InspectOptions,
  onProgress?: (bytesRead: number, size: number) => void,
): Promise<FileInspection> {
  const { size } = await stat(path);
  const tracker = new ConnectionTracker(opts);
  let read = 0;
  const stream = createReadStream(path, { highWaterMark: 1 << 20 });
  async function* chunks(): AsyncGenerator<Buffer> {
    for await (const chunk of stream) {
      read += (chunk as Buffer).length;
      onProgress?.(read, size);
      yield chunk as Buffer;
    }
  }
  try {
    for await (const rec of readCaptureStream(chunks())) tracker.add(decodePacket(rec));
  } catch (e) {
    stream.destroy();
    if (e instanceof WireError) return { result: tracker.result(), error: e, size };
    throw e;
  }
  return { result: tracker.result(), size };
}
