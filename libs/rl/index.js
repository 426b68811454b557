// Runtime entry of @flywheel/rl for compiled code (node_modules/@flywheel/rl links here): the build's output.
module.exports = require('../../dist/libs/rl/src/index.js');
