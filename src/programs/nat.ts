/** The balancer's packet program, built in src/programs/nat/ (one file per job); this path stays for its importers. */
export { natProgram } from "./nat/index.js";
