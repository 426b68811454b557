// Runtime entry of @flywheel/contracts for compiled code (node_modules/@flywheel/contracts links here): the build's output.
module.exports = require('../../dist/libs/contracts/src/index.js');
