/** The Flywheel release every service reports in pings and metrics; a spec keeps it equal to package.json. */
export const FLYWHEEL_VERSION = '0.1.0';
