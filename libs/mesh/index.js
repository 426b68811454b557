// Runtime entry of @flywheel/mesh for compiled code (node_modules/@flywheel/mesh links here): the build's output.
module.exports = require('../../dist/libs/mesh/src/index.js');
