// Runtime entry of @flywheel/kernels for compiled code (node_modules/@flywheel/kernels links here): the build's output.
module.exports = require('../../dist/libs/kernels/src/index.js');
