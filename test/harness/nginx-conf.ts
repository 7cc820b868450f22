/**
 * nginx configurations for tests and benchmarks: one foreground nginx per folder, every path it
 * writes (pid, logs, temp files) inside that folder, so runs never collide and need no system setup.
 */

/** What varies between the nginx instances the tests and benches start. */
export interface NginxConfOptions {
  /** Folder for pid, error log and temp paths. */
  dir: string;
  /** `server { ... }` blocks. */
  servers: string;
  /** `log_format` text and the access log path; omit for `access_log off`. */
  accessLog?: { path: string; format: string };
  /** false: one process, no master (the simplest to stop by pid). */
  masterProcess?: boolean;
  workerConnections?: number;
  /** Extra `http { }` directives (keepalive settings...). */
  httpExtra?: string;
  /** File name prefix for pid and error log, when several instances share `dir`. */
  name?: string;
}

/** The nginx.conf text. */
export function nginxConf(o: NginxConfOptions): string {
  const name = o.name ?? "nginx";
  const log = o.accessLog ? `  log_format toa '${o.accessLog.format}';\n  access_log ${o.accessLog.path} toa;` : "  access_log off;";
  return `daemon off;
${o.masterProcess === false ? "master_process off;\n" : ""}user root;
worker_processes 1;
worker_rlimit_nofile 16384;
pid ${o.dir}/${name}.pid;
error_log ${o.dir}/${name}-error.log warn;
events { worker_connections ${o.workerConnections ?? 1024}; }
http {
${log}
  client_body_temp_path ${o.dir}/${name}-body;
  proxy_temp_path ${o.dir}/${name}-proxy;
  fastcgi_temp_path ${o.dir}/${name}-fastcgi;
  uwsgi_temp_path ${o.dir}/${name}-uwsgi;
  scgi_temp_path ${o.dir}/${name}-scgi;
  default_type text/plain;
${o.httpExtra ?? ""}
${o.servers}
}
`;
}
