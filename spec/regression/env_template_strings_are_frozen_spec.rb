# frozen_string_literal: true

require "spec_helper"

# The Rack env is a copy of a per-listener template; its String values used to be shared
# unfrozen, so `env["SCRIPT_NAME"] << "/mount"` in one request showed up in every later one.
RSpec.describe "the env's template Strings" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("env_mutator.ru")]) }
  after(:all) { @server&.stop }

  it "are frozen (as the C gem's) and never carry one request's change into the next" do
    first = http_get(@server.port, "/").body.lines.map(&:chomp)
    second = http_get(@server.port, "/").body.lines.map(&:chomp)
    expect(first.grep(/=/)).to eq(second.grep(/=/))
    expect(second).to include("SCRIPT_NAME=", "rack.url_scheme=http", "sendfile.type=X-Sendfile")
    %w[SCRIPT_NAME rack.url_scheme sendfile.type QUERY_STRING].each do |key|
      expect(second).to include("#{key}:frozen")
    end
  end
end
