# frozen_string_literal: true

require "spec_helper"

# (How fast many tiny chunks are received is a benchmark's business; this checks they are
# all received.) A chunked upload of 20,000 one-byte chunks, sent in one write, reaches the
# app whole.
RSpec.describe "a chunked upload of 20,000 one-byte chunks arrives whole" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("counts_request_body.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  it "gives the app all 20,000 bytes" do
    body = "1\r\nz\r\n" * 20_000 + "0\r\n\r\n"
    request = "POST /count HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n" \
              "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n" + body
    reply = raw_request(port, request, timeout: 10)
    expect(reply).to start_with("HTTP/1.1 200")
    expect(reply.split("\r\n\r\n", 2).last).to eq("20000")
  end

  it "keeps serving afterwards" do
    expect_serving(@server)
  end
end
