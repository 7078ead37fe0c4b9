# frozen_string_literal: true

# Specs run the real server: `exe/iodine` processes on free ports, spoken to with Net::HTTP,
# curl and raw sockets. `rake compile` must have put the extension in lib/iodine/.

ROOT = File.expand_path("..", __dir__)
$LOAD_PATH.unshift(File.join(ROOT, "lib"))

require "rbconfig"
require "socket"
require "net/http"
require "time"
require "timeout"
require "tmpdir"
require_relative "support/server_process"
require_relative "support/script_runner"
require_relative "support/command"

RSpec.configure do |config|
  config.include ServerHelpers
  config.include CommandHelpers
  config.disable_monkey_patching!
  config.order = :defined
  config.expect_with(:rspec) { |c| c.syntax = :expect }
end
