// Runtime entry of @flywheel/model for compiled code (node_modules/@flywheel/model links here): the build's output.
module.exports = require('../../dist/libs/model/src/index.js');
