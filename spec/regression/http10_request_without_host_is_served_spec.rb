# frozen_string_literal: true

require "spec_helper"

# HTTP/1.0 has no Host header requirement: `GET / HTTP/1.0` without one is answered 200
# (only HTTP/1.1 requires Host).
RSpec.describe "an HTTP/1.0 request without Host is served" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("answers_ok.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  it "answers GET / HTTP/1.0 (no Host) with 200 and the app's body" do
    reply = raw_request(port, "GET / HTTP/1.0\r\n\r\n", timeout: 5)
    expect(reply).to match(%r{\AHTTP/1\.[01] 200 })
    expect(reply.split("\r\n\r\n", 2).last).to eq("ok")
  end

  it "keeps serving afterwards" do
    expect_serving(@server)
  end
end
