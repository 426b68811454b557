// Runtime entry of @flywheel/config for compiled code (node_modules/@flywheel/config links here): the build's output.
module.exports = require('../../dist/libs/config/src/index.js');
